"""`kedro run --pipeline score` end to end: a label-less snapshot -> the champion ->
churn_scores, with the same probabilities as the API gives for the same rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from kedro_project import make_project, run
from serving_fixtures import build_registry, feature_frame

from churn_kedro.serving.app import Application

SNAPSHOT = "insurance_data_2026-11-02_06-00-00"


def write_snapshot(project, rows: int = 300, name: str = SNAPSHOT) -> pd.DataFrame:
    """A file to score as a client would send it: no churn column, a few broken rows."""
    frame = feature_frame(rows, seed=21)
    frame["customer_id"] = [f"S{i}" for i in range(rows)]
    text = frame.astype(object).where(frame.notna(), "")
    text["age"] = [("" if a == "" else str(int(a))) for a in text["age"]]
    text["claims_count"] = [str(int(c)) for c in text["claims_count"]]
    text.loc[3, "age"] = "old"  # rejected: not a number
    text.loc[4, "policy_type"] = "boat"  # rejected: not an allowed value
    folder = project / "data" / "01_raw_to_score"
    folder.mkdir(parents=True, exist_ok=True)
    text.to_csv(folder / f"{name}.csv", index=False)
    return text


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("score") / "project")
    build_registry(
        root / "data" / "06_models" / "registry",
        ("logistic_regression", "catboost"),
        promote="v2-catboost",
    )
    return root


def scores_table(url: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text("SELECT * FROM churn_scores ORDER BY customer_id"), conn)
    finally:
        engine.dispose()


def test_score_pipeline_writes_churn_scores_like_the_api(project):
    text = write_snapshot(project)
    run(project, "kedro", "run", "--pipeline", "score")
    scores = scores_table(f"sqlite:///{project}/data/churn.db")
    assert len(scores) == 298  # two broken rows rejected
    assert set(scores["model_version"]) == {"v2-catboost"}
    assert set(scores["source_file"]) == {f"raw_to_score/{SNAPSHOT}.csv"}
    report = json.loads((project / "data/08_reporting/score_report.json").read_text())
    assert report["rows_scored"] == 298 and report["rows_rejected"] == 2
    assert any("age: 'old' is not a number" in r for r in report["rejected_reasons"])
    engine = sa.create_engine(f"sqlite:///{project}/data/churn.db")
    with engine.connect() as conn:
        quarantined = (
            conn.execute(
                sa.text("SELECT row_number FROM quarantine WHERE source_file = :f ORDER BY 1"),
                {"f": f"raw_to_score/{SNAPSHOT}.csv"},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert quarantined == [4, 5]

    # parity: the same rows through the API get identical probabilities
    good = text.drop(index=[3, 4])
    instances = [
        {
            "customer_id": r.customer_id,
            "age": int(r.age) if r.age != "" else None,
            "annual_premium": float(r.annual_premium),
            "claims_count": int(r.claims_count),
            "policy_type": r.policy_type or None,
        }
        for r in good.itertuples()
    ]
    app = Application(str(project / "data/06_models/registry"), refresh_seconds=60, max_batch=1000)
    answer = app.handle(
        "POST",
        "/predict",
        {"Content-Type": "application/json"},
        json.dumps({"instances": instances}),
    )
    assert answer.status == 200
    api = pd.DataFrame(answer.body["predictions"]).sort_values("customer_id").reset_index(drop=True)
    assert api["customer_id"].tolist() == scores["customer_id"].tolist()
    assert np.array_equal(
        api["churn_probability"].to_numpy(), scores["churn_probability"].to_numpy()
    )
    assert api["churn"].tolist() == scores["churn"].astype(bool).tolist()

    # scoring the same file again replaces its rows
    run(project, "kedro", "run", "--pipeline", "score")
    assert len(scores_table(f"sqlite:///{project}/data/churn.db")) == 298


def test_score_without_champion_fails_clearly(tmp_path):
    root = make_project(tmp_path / "project")
    write_snapshot(root, rows=20)
    result = run(root, "kedro", "run", "--pipeline", "score", check=False)
    assert result.returncode != 0
    assert "no champion in the model registry" in result.stdout + result.stderr


def test_score_names_a_missing_snapshot(project):
    result = run(
        project,
        "kedro",
        "run",
        "--pipeline",
        "score",
        "--params",
        "score.snapshot=nope",
        check=False,
    )
    assert result.returncode != 0
    assert "nope.csv: not found" in result.stdout + result.stderr


def test_score_on_mysql(project, mysql_url):
    write_snapshot(project)
    (project / "conf" / "local" / "credentials.yml").write_text(f"churn_db:\n  con: {mysql_url}\n")
    try:
        run(project, "kedro", "run", "--pipeline", "score")
    finally:
        (project / "conf" / "local" / "credentials.yml").unlink()
    scores = scores_table(mysql_url)
    assert len(scores) == 298 and set(scores["model_version"]) == {"v2-catboost"}
