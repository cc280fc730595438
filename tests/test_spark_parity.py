"""The contract between the engines: one fixture file through the pandas path and the
Spark path (local[2]) gives the same table rows, quarantine rows and reasons, and the
same scores (see docs/architecture.md: engines)."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from test_ingest import (
    FILE_ERRORS,
    HEADER,
    ROW_ERRORS,
    SCHEMA,
    KeptDataset,
    count,
    good_rows,
    ingest,
    query,
    snapshot,
)

from churn_kedro.ingestion.run import IngestionError
from churn_kedro.pipelines.ingest_raw import create_pipeline as raw_pipeline

pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SPARK_CONF = REPO / "conf/spark/spark.yml"


@pytest.fixture(scope="module")
def spark():
    import yaml

    from churn_kedro.spark.session import session

    os.environ["PYSPARK_PYTHON"] = sys.executable
    settings = yaml.safe_load(SPARK_CONF.read_text())
    spark = session({**settings, "spark.sql.shuffle.partitions": 2})
    yield spark
    spark.stop()


def spark_ingest(tmp_path: Path, url: str | None = None, **params) -> dict:
    """ingest_raw with the Spark engine's datasets (conf/spark's catalog)."""
    from churn_kedro.datasets import SparkIngestionDatabaseDataset, SparkSnapshotObjectsDataset

    url = url or f"sqlite:///{tmp_path / 'churn.db'}"
    report = KeptDataset()
    catalog = DataCatalog(
        {
            "raw_objects": SparkSnapshotObjectsDataset(
                path=str(tmp_path / "raw"), key_prefix="raw"
            ),
            "ingestion_database": SparkIngestionDatabaseDataset(credentials={"con": url}),
            "params:schema": MemoryDataset(SCHEMA),
            "params:ingestion": MemoryDataset({"chunk_rows": 100000, "only": None, **params}),
            "params:force": MemoryDataset(False),
            "raw_ingestion_report": report,
        }
    )
    try:
        SequentialRunner().run(raw_pipeline(), catalog)
    except IngestionError as exc:
        exc.report = report.load()
        raise
    return report.load()


# Bad rows, exact repeats, conflicting and padded ids, pandas' missing words (NA, null),
# quoted cells (some with line breaks), a short row, a blank line.
FIXTURE_LOADED, FIXTURE_REJECTED = 30, 13  # FIXTURE's good and quarantined rows
FIXTURE = (
    HEADER
    + good_rows(1, 30)
    + "31,forty,100.0,auto,0,0\n"  # not a number
    + "32,150,-5,boat,0,2\n"  # four broken rules
    + "5,35,105.5,home,1,1\n"  # repeats row 5 exactly
    + "7,99,107.5,auto,3,1\n"  # id 7 with other values
    + " 8 ,38,108.5,home,0,0\n"  # id 8 padded: the same id as row 8, other cells
    + "33,NA,110.0,life,null,1\n"  # missing words: age and claims_count missing (nullable)
    + '34,40,"1,5",auto,0,0\n'  # a quoted cell with a comma: not a number
    + "\n"
    + "35,41,120.0\n"  # a short row: the rest missing
    + ",42,121.0,auto,0,1\n"  # no id
    + '36,43,122.5,"home",1,"1"\n'
    + "5,35,105.5,home,1,1\n"  # repeats row 5 again
    + '37,44,"123\n.5",auto,0,1\n'  # a line break in a quoted cell: not a number
    + '"38\nb",45,124.5,"life",2,0\n'  # and in an id: a valid row, the next record
)


def table(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(sql).fetchall())


def test_one_file_through_both_engines_gives_the_same_rows_quarantine_and_reasons(tmp_path, spark):
    pandas_dir, spark_dir = tmp_path / "pandas", tmp_path / "spark"
    for folder in (pandas_dir, spark_dir):
        snapshot(folder / "raw", "2026-11-01_06-00-00", FIXTURE)

    pandas_report = ingest(pandas_dir)
    spark_report = spark_ingest(spark_dir)

    columns = "source_file, customer_id, age, annual_premium, policy_type, claims_count, churn, row_number"
    rows = table(pandas_dir / "churn.db", f"SELECT {columns} FROM policies_raw")
    assert len(rows) > 20
    assert table(spark_dir / "churn.db", f"SELECT {columns} FROM policies_raw") == rows
    bad = "SELECT source_file, row_number, reason, record FROM quarantine"
    quarantined = table(pandas_dir / "churn.db", bad)
    assert [r[1] for r in quarantined] == [5, 7, 8, 31, 32, 33, 34, 35, 37, 38, 39, 41, 42]
    assert table(spark_dir / "churn.db", bad) == quarantined
    log = "SELECT source_file, checksum, size_bytes, rows_read, rows_loaded, rows_rejected, status FROM ingestion_log"
    assert table(spark_dir / "churn.db", log) == table(pandas_dir / "churn.db", log)
    for report in (pandas_report, spark_report):
        for entry in report["loaded"]:
            entry.pop("object_version")
    assert spark_report == pandas_report


def test_a_file_without_quotes_is_read_in_splits_with_the_same_rows_and_numbers(tmp_path, spark):
    """No quote, so no record spans lines: the file is read in several splits (small ones
    here) and still numbered and judged as the pandas reader does, repeats across splits."""
    from churn_kedro.datasets import SparkSnapshotObjectsDataset
    from churn_kedro.spark.validation import holds_a_quote, read_snapshot

    unquoted = "".join(line for line in FIXTURE.splitlines(True) if '"' not in line)
    text = unquoted + good_rows(100, 400) + "5,35,105.5,home,1,1\n" + "150,1,1.0,auto,0,1\n"
    pandas_dir, spark_dir = tmp_path / "pandas", tmp_path / "spark"
    for folder in (pandas_dir, spark_dir):
        snapshot(folder / "raw", "2026-11-01_06-00-00", text)
    (obj,) = (
        SparkSnapshotObjectsDataset(path=str(spark_dir / "raw"), key_prefix="raw").load().values()
    )
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2k")
    try:
        assert not holds_a_quote(spark, obj)
        assert read_snapshot(spark, obj)[0].rdd.getNumPartitions() > 3
        ingest(pandas_dir)
        spark_ingest(spark_dir)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    columns = "customer_id, age, annual_premium, policy_type, claims_count, churn, row_number"
    rows = table(pandas_dir / "churn.db", f"SELECT {columns} FROM policies_raw")
    assert len(rows) > 400
    assert table(spark_dir / "churn.db", f"SELECT {columns} FROM policies_raw") == rows
    bad = "SELECT row_number, reason, record FROM quarantine"
    quarantined = table(pandas_dir / "churn.db", bad)
    assert any("150" in reason for _, reason, _ in quarantined)  # a conflict across splits
    assert table(spark_dir / "churn.db", bad) == quarantined


def test_every_bad_file_gets_the_same_outcome_on_spark(tmp_path, spark):
    raw = tmp_path / "raw"
    for stamp, (content, _) in {**FILE_ERRORS, **ROW_ERRORS}.items():
        snapshot(raw, stamp, content)
    good = snapshot(raw, "2026-01-03_00-00-00", HEADER + good_rows(1, 20))

    with pytest.raises(IngestionError) as failure:
        spark_ingest(tmp_path)

    errors = {e["source_file"]: e["error"] for e in failure.value.report["errors"]}
    for stamp, (_, problem) in FILE_ERRORS.items():
        name = f"insurance_data_{stamp}.csv"
        assert problem in errors[f"raw/{name}"] and str(raw / name) in errors[f"raw/{name}"]
        for t in ("policies_raw", "quarantine", "ingestion_log"):
            assert count(tmp_path, t, f"raw/{name}") == 0
    for stamp, (_, reasons) in ROW_ERRORS.items():
        source = f"raw/insurance_data_{stamp}.csv"
        quarantined = dict(
            query(
                tmp_path, f"SELECT row_number, reason FROM quarantine WHERE source_file='{source}'"
            )
        )
        assert set(quarantined) == set(reasons)
        for row, fragment in reasons.items():
            assert fragment in quarantined[row]
    assert count(tmp_path, "policies_raw", f"raw/{good.name}") == 20


def mysql_rows(url: str, sql: str) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.exec_driver_sql(sql).fetchall())


@pytest.fixture
def scratch_mysql():
    import uuid

    import sqlalchemy as sa
    from conftest import MYSQL_SERVER, _scratch_database

    try:
        sa.create_engine(MYSQL_SERVER, connect_args={"connect_timeout": 3}).connect().close()
    except sa.exc.OperationalError as exc:
        pytest.skip(f"MariaDB unreachable: {exc.orig}")
    with _scratch_database(sa.make_url(MYSQL_SERVER), f"churn_spark_{uuid.uuid4().hex[:8]}") as url:
        yield url


@pytest.mark.mysql
def test_jdbc_staging_loads_the_same_rows_exactly_once_and_a_failure_leaves_nothing(
    tmp_path, spark, scratch_mysql, monkeypatch
):
    from churn_kedro.spark import store

    pandas_dir, spark_dir = tmp_path / "pandas", tmp_path / "spark"
    for folder in (pandas_dir, spark_dir):
        snapshot(folder / "raw", "2026-11-01_06-00-00", FIXTURE)
    ingest(pandas_dir)

    # killed between the staging writes and the commit: nothing of the object in the tables
    def die(self, *args):
        raise RuntimeError("the job died")

    with monkeypatch.context() as patched:
        patched.setattr(store.SparkIngestionDatabase, "drop", die)
        original = store.SparkIngestionDatabase._load_staged

        def staged_then_die(self, *args):
            original(self, *args[:3], lambda: die(self), *args[4:])

        patched.setattr(store.SparkIngestionDatabase, "_load_staged", staged_then_die)
        with pytest.raises(RuntimeError, match="the job died"):
            spark_ingest(spark_dir, url=scratch_mysql)
    for t in ("policies_raw", "quarantine", "ingestion_log"):
        assert mysql_rows(scratch_mysql, f"SELECT COUNT(*) FROM {t}") == [(0,)]

    # the staging tables of the dead run are there; the rerun drops them and loads the
    # object whole
    def staging() -> list[str]:
        tables = [name for (name,) in mysql_rows(scratch_mysql, "SHOW TABLES")]
        return [t.split("_insurance")[0] for t in tables if t.startswith("stage_")]

    assert staging() == ["stage_bad", "stage_rows"]

    spark_ingest(spark_dir, url=scratch_mysql)
    assert staging() == []
    second = spark_ingest(spark_dir, url=scratch_mysql)  # a duplicate delivery
    assert second["skipped"] == ["raw/insurance_data_2026-11-01_06-00-00.csv"]

    columns = "customer_id, age, annual_premium, policy_type, claims_count, churn, `row_number`"
    assert mysql_rows(scratch_mysql, f"SELECT {columns} FROM policies_raw") == table(
        pandas_dir / "churn.db", f"SELECT {columns} FROM policies_raw"
    )
    bad = "SELECT `row_number`, reason, record FROM quarantine"
    assert mysql_rows(scratch_mysql, bad) == table(pandas_dir / "churn.db", bad)
    assert mysql_rows(scratch_mysql, "SELECT rows_loaded, rows_rejected FROM ingestion_log") == [
        (FIXTURE_LOADED, FIXTURE_REJECTED)
    ]


def test_data_processing_on_spark_gives_the_pandas_split_and_quarantine(tmp_path, spark):
    import yaml

    from churn_kedro.datasets import SnapshotObjectsDataset, SparkSnapshotObjectsDataset
    from churn_kedro.pipelines.data_processing.nodes import (
        select_latest_snapshot,
        split_train_holdout,
        validate_snapshot,
    )

    conf = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())
    params = yaml.safe_load((REPO / "conf/base/parameters_data_processing.yml").read_text())
    params = params["data_processing"]
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", FIXTURE + good_rows(100, 60))
    results = {}
    for engine, dataset in (
        ("pandas", SnapshotObjectsDataset),
        ("spark", SparkSnapshotObjectsDataset),
    ):
        objects = dataset(path=str(tmp_path / "raw"), key_prefix="raw").load()
        raw, info = select_latest_snapshot(objects, conf["snapshot_pattern"])
        valid, quarantine, report = validate_snapshot(raw, info, SCHEMA, params)
        train, holdout, processed = split_train_holdout(valid, info, report, SCHEMA, params)
        results[engine] = (train, holdout, processed, quarantine, report)

    (train, holdout, processed, quarantine, report) = results["pandas"]
    spark_train, spark_holdout, spark_processed, spark_quarantine, spark_report = results["spark"]
    assert len(holdout) and len(train) > len(holdout)
    for mine, theirs in ((spark_train, train), (spark_holdout, holdout)):
        pd.testing.assert_frame_equal(mine, theirs, check_dtype=False)
    name = next(iter(processed))
    pd.testing.assert_frame_equal(spark_processed[name], processed[name], check_dtype=False)
    pd.testing.assert_frame_equal(
        spark_quarantine[list(quarantine.columns)], quarantine, check_dtype=False
    )
    assert spark_report == {**report, "rows_valid_total": 90, "rows_used": 90, "sampled": False}

    # above the row limit: a sample of about that size, stratified by the target, and said so
    objects = SparkSnapshotObjectsDataset(path=str(tmp_path / "raw"), key_prefix="raw").load()
    raw, info = select_latest_snapshot(objects, conf["snapshot_pattern"])
    valid, _, report = validate_snapshot(raw, info, SCHEMA, {**params, "spark_max_rows": 40})
    assert report["sampled"] and report["rows_used"] == len(valid) and 20 <= len(valid) <= 60
    assert set(valid["churn"]) == {0, 1}


@pytest.mark.mysql
def test_a_batch_of_spark_scores_replaces_the_previous_one_through_jdbc_staging(
    spark, scratch_mysql
):
    from datetime import datetime

    from churn_kedro.database import create_engine
    from churn_kedro.spark.store import SparkIngestionDatabase

    db = SparkIngestionDatabase(create_engine(scratch_mysql))
    scored_at = datetime(2026, 11, 1, 6)
    scores = spark.createDataFrame(
        [("v1", "raw/a.csv", str(i), i / 10, i >= 5, scored_at) for i in range(10)],
        "model_version string, source_file string, customer_id string, "
        "churn_probability double, churn boolean, scored_at timestamp",
    )
    rejected = pd.DataFrame({"row_number": [11], "reason": ["age: missing"], "record": ["{}"]})

    db.replace_scores("raw/a.csv", "v1", scores, rejected)
    db.replace_scores("raw/a.csv", "v1", scores.filter("customer_id < '3'"), rejected)

    assert mysql_rows(scratch_mysql, "SELECT customer_id, churn FROM churn_scores") == [
        ("0", 0),
        ("1", 0),
        ("2", 0),
    ]
    assert mysql_rows(scratch_mysql, "SELECT `row_number` FROM quarantine") == [(11,)]
    assert [t for (t,) in mysql_rows(scratch_mysql, "SHOW TABLES") if t.startswith("stage_")] == []
