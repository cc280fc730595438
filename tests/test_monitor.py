"""`kedro run --pipeline monitor` on a generated panel (docs/architecture.md, "Monitoring"):
one customer base over six monthly snapshots, with `--drift 1.0` from the fourth on.
The champion is trained on the first; each later snapshot is scored without its labels
(what the business sees at the time), then arrives labelled, then is monitored."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from kedro_project import make_project, retrain, run

from churn_kedro.monitoring.drift import adjust_p_values, ks_from_counts, psi
from churn_kedro.monitoring.profile import bin_counts, quantile_edges
from churn_kedro.serving.app import Application

START = datetime(2026, 1, 1, 6)
STAMPS = [(START + timedelta(days=30 * k)).strftime("%Y-%m-%d_%H-%M-%S") for k in range(6)]
DRIFT_FROM = 3


def name(index: int) -> str:
    return f"insurance_data_{STAMPS[index]}.csv"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("monitor") / "project")
    run(root, "churn-generate", "--panel", "6", "--every", "30d", "--rows", "10000",
        "--seed", "7", "--timestamp", STAMPS[0], "--drift", "1.0",
        "--drift-from", str(DRIFT_FROM), "--out", "data/panel", "--truth-dir", "data/truth")  # fmt: skip
    shutil.copy(root / "data/panel" / name(0), root / "data/01_raw" / name(0))
    retrain(root)
    return root


def to_score(project, index: int) -> None:
    """The snapshot as scored at its time: without the labels, which come later."""
    folder = project / "data/01_raw_to_score"
    folder.mkdir(exist_ok=True)
    frame = pd.read_csv(project / "data/panel" / name(index), dtype=str, keep_default_na=False)
    frame.drop(columns="churn").to_csv(folder / name(index), index=False)


def labelled(project, index: int) -> None:
    shutil.copy(project / "data/panel" / name(index), project / "data/01_raw" / name(index))


def monitor(project, check_code: int = 0):
    result = run(project, "kedro", "run", "--pipeline", "monitor", check=False)
    assert result.returncode == check_code, result.stderr[-4000:]
    report = json.loads((project / "data/08_reporting/monitoring_report.json").read_text())
    return result, report


def table(project, sql: str) -> pd.DataFrame:
    engine = sa.create_engine(f"sqlite:///{project}/data/churn.db")
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(sql), conn)
    finally:
        engine.dispose()


def verdict_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() + result.stdout.splitlines()
             if "verdict: " in line]  # fmt: skip
    assert len(lines) == 1, lines
    return lines[0][lines[0].index("verdict: ") :]


def test_the_registered_champion_carries_its_reference_profile(project):
    registry = project / "data/06_models/registry"
    version = json.loads((registry / "champion.json").read_text())["version"]
    profile = json.loads((registry / "versions" / version / "profile.json").read_text())
    assert profile["format"] == 1 and profile["version"] == version
    assert set(profile["features"]) == {"age", "annual_premium", "claims_count", "policy_type"}
    assert set(profile["features"]["policy_type"]["counts"]) == {"auto", "home", "life"}
    card = json.loads((registry / "versions" / version / "card.json").read_text())
    assert profile["features"]["age"]["rows"] == card["data"]["training_rows"]
    assert sum(profile["score"]["psi_counts"]) == card["data"]["holdout_rows"]
    assert (registry / "versions" / version / "profile.json").stat().st_size < 20_000


def test_drift_free_snapshots_flag_nothing_and_the_drifted_one_asks_for_retraining(project):
    # the training snapshot itself, scored after training: no realized performance from it
    to_score(project, 0)
    run(project, "kedro", "run", "--pipeline", "score")
    result, report = monitor(project)
    assert report["performance"]["available"] is False
    assert "were known when" in report["performance"]["note"]
    assert not any(f["flagged"] for f in report["data_drift"]["features"])

    for index in range(1, DRIFT_FROM):
        to_score(project, index)
        run(project, "kedro", "run", "--pipeline", "score")
        labelled(project, index)
        result, report = monitor(project)
        assert report["data_drift"]["source_file"] == f"raw/{name(index)}"
        flagged = [f["feature"] for f in report["data_drift"]["features"] if f["flagged"]]
        assert flagged == [], report["data_drift"]
        assert [b["source_file"] for b in report["prediction_drift"]] == [
            f"raw_to_score/{name(index)}"
        ]  # only the batch no run has monitored yet
        assert not report["prediction_drift"][0]["flagged"], report["prediction_drift"]
        performance = report["performance"]
        assert performance["available"], performance
        assert performance["rows"] > 8000  # the customers scored a month before their label
        low, high = performance["roc_auc_ci"]
        assert low < performance["card_roc_auc"] + 0.03 and not performance["degraded"]
        assert report["verdict"] == "ok" and verdict_line(result) == "verdict: ok"

    to_score(project, DRIFT_FROM)
    run(project, "kedro", "run", "--pipeline", "score")
    labelled(project, DRIFT_FROM)
    result, report = monitor(project, check_code=3)  # the documented exit code of retrain
    line = verdict_line(result)
    assert line.startswith("verdict: retrain: realized roc_auc"), line
    assert "annual_premium" in line and f"raw_to_score/{name(DRIFT_FROM)}: score" in line
    assert report["verdict"] == "retrain" and report["exit_code"] == 3
    assert report["performance"]["roc_auc_degraded"]
    assert report["performance"]["roc_auc"] < report["performance"]["card_roc_auc"] - 0.05
    assert report["prediction_drift"][0]["flagged"]

    # the history: one verdict row per run, and rows per feature and statistic
    verdicts = table(
        project, "SELECT verdict FROM monitoring WHERE subject = 'verdict' ORDER BY run_at"
    )
    assert verdicts["verdict"].tolist() == ["ok", "ok", "ok", "retrain"]
    premium = table(
        project,
        "SELECT statistic, flagged FROM monitoring WHERE subject = 'annual_premium' "
        f"AND source_file = 'raw/{name(DRIFT_FROM)}'",
    )
    assert dict(zip(premium["statistic"], premium["flagged"]))["ks"] == 1
    latest = json.loads((project / "data/06_models/registry/monitoring/latest.json").read_text())
    assert latest["verdict"] == "retrain" and latest["run_id"] == report["run_id"]
    for plot in ("drift", "score", "calibration"):
        assert (project / f"data/08_reporting/monitoring_{plot}.png").stat().st_size > 5000

    status = run(project, "churn-registry", "status").stdout
    assert f"monitoring: retrain at {latest['at']}" in status
    app = Application(str(project / "data/06_models/registry"), refresh_seconds=60)
    answer = app.handle("GET", "/model")
    assert answer.status == 200 and answer.body["monitoring"]["verdict"] == "retrain"
    assert answer.body["monitoring"]["at"] == latest["at"]


def test_scores_made_after_the_labels_were_known_do_not_count(project):
    # the labelled snapshot is ingested first, and only then scored: hindsight, excluded
    index = DRIFT_FROM + 1
    labelled(project, index)
    run(project, "kedro", "run", "--pipeline", "ingest_raw")
    to_score(project, index)
    run(project, "kedro", "run", "--pipeline", "score")
    result, report = monitor(project, check_code=0)
    performance = report["performance"]
    assert performance["available"] is False
    assert performance["scored_rows"] > 9000
    assert performance["scored_after_labels_known"] == performance["scored_rows"]
    assert report["verdict"] == "warn"  # the drift is still there


def test_a_snapshot_that_breaks_the_contract_is_refused_and_the_history_kept(project):
    before = table(project, "SELECT COUNT(*) AS n FROM monitoring")["n"].iloc[0]
    latest = (project / "data/06_models/registry/monitoring/latest.json").read_text()
    broken = project / "data/01_raw/insurance_data_2026-12-01_06-00-00.csv"
    pd.read_csv(project / "data/panel" / name(5)).drop(columns="age").to_csv(broken, index=False)
    try:
        result = run(project, "kedro", "run", "--pipeline", "monitor", check=False)
    finally:
        broken.unlink()
    assert result.returncode not in (0, 3)
    assert "raw/insurance_data_2026-12-01_06-00-00.csv: missing required column(s) age" in (
        result.stderr + result.stdout
    )
    assert table(project, "SELECT COUNT(*) AS n FROM monitoring")["n"].iloc[0] == before
    assert (project / "data/06_models/registry/monitoring/latest.json").read_text() == latest


# ---- the statistics on their own --------------------------------------------------------


def test_ks_from_the_profile_grid_matches_scipy_on_discrete_data():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(1)
    a, b = rng.poisson(2.0, 3000).astype(float), rng.poisson(2.3, 2000).astype(float)
    edges = quantile_edges(np.concatenate([a, np.arange(0, 15.0)]), 100)  # every value an edge
    d, p = ks_from_counts(bin_counts(a, edges), bin_counts(b, edges))
    exact = ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(exact.statistic) and p == pytest.approx(exact.pvalue, rel=1e-6)


def test_psi_and_the_corrections():
    assert psi(np.array([50, 50]), np.array([50, 50])) == 0.0
    assert psi(np.array([90, 10]), np.array([10, 90])) > 2
    assert adjust_p_values([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_p_values([0.01, 0.04, 0.03], "bh") == pytest.approx([0.03, 0.04, 0.04])
    with pytest.raises(ValueError, match="expected holm, bh or none"):
        adjust_p_values([0.5], "bonferroni")


def test_on_aws_the_verdict_becomes_a_metric_and_an_event(monkeypatch):
    import boto3
    from moto import mock_aws

    from churn_kedro.datasets.monitoring_dataset import VerdictEventsDataset

    for key, value in {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    summary = {"verdict": "retrain", "reasons": ["realized roc_auc 0.59 ..."], "at": "2026-04-01T06:00:00Z",
               "model_version": "v1", "run_id": "r1", "source_file": "raw/x.csv"}  # fmt: skip
    with mock_aws():
        sqs, events = boto3.client("sqs"), boto3.client("events")
        queue = sqs.create_queue(QueueName="verdicts")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        events.put_rule(
            Name="retrain",
            EventPattern=json.dumps(
                {"source": ["churn-kedro.monitoring"], "detail": {"verdict": ["retrain"]}}
            ),
        )
        events.put_targets(
            Rule="retrain", Targets=[{"Id": "q", "Arn": arn["Attributes"]["QueueArn"]}]
        )
        VerdictEventsDataset().save(summary)
        (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
        event = json.loads(message["Body"])
        assert event["detail-type"] == "Monitoring verdict" and event["detail"] == summary
        (metric,) = boto3.client("cloudwatch").list_metrics(Namespace="ChurnKedro")["Metrics"]
        assert metric["MetricName"] == "MonitoringVerdict"
        assert metric["Dimensions"] == [{"Name": "ModelVersion", "Value": "v1"}]
