"""Ingestion into the real MariaDB (the RDS stand-in): LOAD DATA LOCAL INFILE inside the
object's transaction, exactly-once under re-runs and concurrent runs, and a run killed
half-way leaves nothing behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from test_ingest import HEADER, SAMPLE, SCHEMA, good_rows, ingest, snapshot

from churn_kedro.schema import Schema, validate_frame

pytestmark = pytest.mark.mysql

TESTS = Path(__file__).parent


def query(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    engine.dispose()
    return rows


def test_the_sample_loads_once_with_the_same_rows_as_a_whole_file_validation(
    tmp_path, fresh_mysql_url
):
    text = SAMPLE.read_text().replace(
        "\n1,", '\n"1,x\\y""z",', 1
    )  # an id with a comma, backslash, quote
    path = snapshot(tmp_path / "raw", "2026-11-01_06-00-00", text)

    first = ingest(tmp_path, fresh_mysql_url, chunk_rows=700)
    second = ingest(tmp_path, fresh_mysql_url)

    whole = validate_frame(pd.read_csv(path, dtype=str), Schema.from_params(SCHEMA), "whole")
    loaded = pd.DataFrame(
        query(
            fresh_mysql_url,
            "SELECT customer_id, age, annual_premium, claims_count, "
            "policy_type, churn FROM policies_raw",
        ),
        columns=whole.valid.columns,
    )
    expected = whole.valid.sort_values("customer_id").reset_index(drop=True)
    plain = lambda f: f.astype(object).where(f.notna(), None)  # noqa: E731 - None is missing either way
    pd.testing.assert_frame_equal(
        plain(loaded.sort_values("customer_id").reset_index(drop=True)),
        plain(expected),
        check_dtype=False,
    )
    assert 'x\\y"z' in loaded["customer_id"].iloc[0] + "".join(loaded["customer_id"])
    assert first["loaded"][0]["rows_loaded"] == len(whole.valid) and second["skipped"] == [
        f"raw/{path.name}"
    ]
    assert query(fresh_mysql_url, "SELECT COUNT(*) FROM quarantine") == [(len(whole.rejected),)]


def test_two_concurrent_runs_load_an_object_once(tmp_path, fresh_mysql_url):
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + good_rows(1, 20000))
    reports, errors = [], []

    def run() -> None:
        try:
            reports.append(ingest(tmp_path, fresh_mysql_url, chunk_rows=2000))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(len(r["loaded"]) for r in reports) == [0, 1]
    assert query(fresh_mysql_url, "SELECT COUNT(*) FROM policies_raw") == [(20000,)]


KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_ingest import ingest
ingest(Path({root!r}), {url!r}, chunk_rows=5000)
"""


@pytest.mark.slow
def test_a_run_killed_half_way_leaves_nothing_and_the_next_run_loads_the_object_whole(
    tmp_path, fresh_mysql_url
):
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + good_rows(1, 200000))
    code = KILLED_RUN.format(tests=str(TESTS), root=str(tmp_path), url=fresh_mysql_url)
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # wait until some chunks are in the open transaction
        if "15000 rows loaded" in line:
            break
    process.send_signal(signal.SIGKILL)  # the connection drops mid-transaction
    process.wait(30)

    for table in ("policies_raw", "quarantine", "ingestion_log"):
        assert query(fresh_mysql_url, f"SELECT COUNT(*) FROM {table}") == [(0,)]

    report = ingest(tmp_path, fresh_mysql_url, chunk_rows=50000)

    assert [r["rows_loaded"] for r in report["loaded"]] == [200000]
    assert query(
        fresh_mysql_url, "SELECT COUNT(*), MIN(`row_number`), MAX(`row_number`) FROM policies_raw"
    ) == [(200000, 1, 200000)]


def test_a_missing_cell_loads_as_null_and_the_text_null_as_text(tmp_path, fresh_mysql_url):
    # LOAD DATA reads an unquoted NULL as NULL: a missing cell must become NULL, while an id
    # that reads 'NULL' (after stripping) is a value like any other
    snapshot(
        tmp_path / "raw", "2026-11-01_06-00-00", HEADER + "1,,100.5,,0,1\n NULL ,30,,home,,0\n"
    )

    ingest(tmp_path, fresh_mysql_url)

    assert query(
        fresh_mysql_url,
        "SELECT customer_id, age, annual_premium, policy_type, claims_count, churn "
        "FROM policies_raw ORDER BY `row_number`",
    ) == [("1", None, 100.5, None, 0.0, 1), ("NULL", 30.0, None, "home", None, 0)]


def test_ids_that_differ_only_in_case_are_two_customers_as_in_validation(tmp_path, fresh_mysql_url):
    snapshot(
        tmp_path / "raw", "2026-11-01_06-00-00", HEADER + "A1,30,1.5,auto,0,1\na1,31,2.5,home,1,0\n"
    )

    report = ingest(tmp_path, fresh_mysql_url)

    assert report["loaded"][0]["rows_loaded"] == 2
    assert sorted(query(fresh_mysql_url, "SELECT customer_id FROM policies_raw")) == [
        ("A1",),
        ("a1",),
    ]


def test_oversized_cells_are_quarantined_bounded_on_mariadb_as_on_sqlite(
    tmp_path, fresh_mysql_url, caplog
):
    from test_ingest import check_oversized_outcome, oversized_rows

    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", oversized_rows())
    snapshot(tmp_path / "raw", "2026-11-02_06-00-00", HEADER + good_rows(10, 5))

    report = ingest(tmp_path, fresh_mysql_url)

    assert [r["rows_loaded"] for r in report["loaded"]] == [2, 5]
    check_oversized_outcome(
        query(fresh_mysql_url, "SELECT `row_number`, reason, record FROM quarantine ORDER BY 1"),
        caplog.text,
    )


def test_an_id_longer_than_the_maximum_is_quarantined_not_cut(tmp_path, fresh_mysql_url):
    # the id column is 128 wide: a 129-character id would be cut and collide with its twin
    prefix = "P" * 128
    content = (
        HEADER + f"{prefix}A,30,1.5,auto,0,1\n{prefix}B,31,2.5,home,1,0\n{prefix},32,3.5,life,0,0\n"
    )
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", content)

    ingest(tmp_path, fresh_mysql_url)

    assert query(fresh_mysql_url, "SELECT `row_number`, reason FROM quarantine ORDER BY 1") == [
        (1, "customer_id: 129 characters, longer than the maximum of 128"),
        (2, "customer_id: 129 characters, longer than the maximum of 128"),
    ]
    assert query(fresh_mysql_url, "SELECT customer_id FROM policies_raw") == [(prefix,)]


def test_every_bad_file_gets_the_same_outcome_on_mariadb_as_on_sqlite(tmp_path, fresh_mysql_url):
    from test_ingest import check_bad_file_corpus

    check_bad_file_corpus(tmp_path, fresh_mysql_url)


def test_a_file_the_database_refuses_is_that_files_error_and_the_others_load(
    tmp_path, fresh_mysql_url, caplog
):
    from churn_kedro.ingestion.run import IngestionError

    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + good_rows(1, 5))
    ingest(tmp_path, fresh_mysql_url)  # creates the tables
    engine = sa.create_engine(fresh_mysql_url)
    with engine.begin() as conn:  # the server itself refuses one customer's row
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON policies_raw FOR EACH ROW BEGIN "
            "IF NEW.customer_id = '77' THEN SIGNAL SQLSTATE '45000' "
            "SET MESSAGE_TEXT = 'refused by the test'; END IF; END"
        )
    engine.dispose()
    refused = snapshot(tmp_path / "raw", "2026-11-02_06-00-00", HEADER + good_rows(70, 10))
    snapshot(tmp_path / "raw", "2026-11-03_06-00-00", HEADER + good_rows(100, 10))

    with pytest.raises(IngestionError) as failure:
        ingest(tmp_path, fresh_mysql_url)

    (error,) = failure.value.report["errors"]
    assert error["source_file"] == f"raw/{refused.name}"
    assert "the database refused it" in error["error"] and "refused by the test" in error["error"]
    assert [r["source_file"] for r in failure.value.report["loaded"]] == [
        "raw/insurance_data_2026-11-03_06-00-00.csv"
    ]
    counts = query(
        fresh_mysql_url,
        f"SELECT (SELECT COUNT(*) FROM policies_raw WHERE source_file = 'raw/{refused.name}'), "
        f"(SELECT COUNT(*) FROM ingestion_log WHERE source_file = 'raw/{refused.name}')",
    )
    assert counts == [(0, 0)]  # nothing of it, so the next run tries it again
    # no row values in the log: the refused file's premiums are 170.5 ... 179.5
    assert not any(f"{100 + i}.5" in caplog.text for i in range(70, 80))
