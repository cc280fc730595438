"""`kedro run --env spark` end to end in a throwaway project copy, beside the pandas
engine's run of the same files: ingest_raw loads the same rows and quarantine, score
gives the same probabilities (within 1e-12: the same inference function)."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
from kedro_project import make_project, run
from serving_fixtures import build_registry
from test_score import write_snapshot
from test_spark_parity import FIXTURE

pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow


def read(db, sql: str) -> pd.DataFrame:
    with sqlite3.connect(db) as conn:
        return pd.read_sql(sql, conn)


def test_ingest_raw_and_score_with_kedro_run_env_spark_match_the_pandas_engine(tmp_path):
    project = make_project(tmp_path / "project")
    (project / "data" / "01_raw" / "insurance_data_2026-11-01_06-00-00.csv").write_text(FIXTURE)
    build_registry(
        project / "data" / "06_models" / "registry",
        ("logistic_regression", "catboost"),
        promote="v2-catboost",
    )
    write_snapshot(project)

    for env in ("local", "spark"):
        run(project, "kedro", "run", "--pipelines", "ingest_raw", "--env", env)
        run(project, "kedro", "run", "--pipelines", "score", "--env", env)
    pandas_db, spark_db = project / "data" / "churn.db", project / "data" / "spark" / "churn.db"

    for sql in (
        "SELECT * FROM policies_raw ORDER BY source_file, customer_id",
        "SELECT source_file, row_number, reason, record FROM quarantine "
        "ORDER BY source_file, row_number",
    ):
        expected = read(pandas_db, sql).drop(columns=["ingested_at"], errors="ignore")
        assert len(expected)
        pd.testing.assert_frame_equal(
            read(spark_db, sql).drop(columns=["ingested_at"], errors="ignore"), expected
        )
    sql = "SELECT * FROM churn_scores ORDER BY customer_id"
    spark_scores, pandas_scores = read(spark_db, sql), read(pandas_db, sql)
    assert len(pandas_scores) == 298 and set(spark_scores["model_version"]) == {"v2-catboost"}
    assert (spark_scores["customer_id"] == pandas_scores["customer_id"]).all()
    assert (spark_scores["churn"] == pandas_scores["churn"]).all()
    difference = (spark_scores["churn_probability"] - pandas_scores["churn_probability"]).abs()
    assert difference.max() <= 1e-12
