"""Ingestion on the embedded default (SQLite): bad files, exactly-once, failures half-way.

Most tests run the real pipelines in-process on a catalog of the real datasets (as a
run does); one runs `kedro run` itself to check messages and the exit code."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from churn_kedro.datasets import IngestionDatabaseDataset, SnapshotObjectsDataset
from churn_kedro.ingestion.run import IngestionError
from churn_kedro.pipelines.ingest_processed import create_pipeline as processed_pipeline
from churn_kedro.pipelines.ingest_raw import create_pipeline as raw_pipeline
from churn_kedro.schema import Schema, validate_frame

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data/01_raw/insurance_data_2026-11-01_06-00-00.csv"
SCHEMA = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())["schema"]
HEADER = "customer_id,age,annual_premium,policy_type,claims_count,churn\n"


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner does not empty once the last node has read it."""

    def _release(self) -> None:
        pass


def snapshot(folder: Path, stamp: str, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"insurance_data_{stamp}.csv"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def good_rows(first_id: int, n: int) -> str:
    return "".join(
        f"{i},{30 + i % 50},{100 + i}.5,{('auto', 'home', 'life')[i % 3]},{i % 4},{i % 2}\n"
        for i in range(first_id, first_id + n)
    )


def ingest(
    tmp_path: Path, url: str | None = None, processed: bool = False, force: bool = False, **params
) -> dict:
    """Run ingest_raw (or ingest_processed) on tmp_path/raw (processed) into ``url``;
    returns the run's report, raising IngestionError (with .report) like a run fails."""
    url = url or f"sqlite:///{tmp_path / 'churn.db'}"
    name = "processed" if processed else "raw"
    report = KeptDataset()
    catalog = DataCatalog(
        {
            f"{name}_objects": SnapshotObjectsDataset(path=str(tmp_path / name), key_prefix=name),
            "ingestion_database": IngestionDatabaseDataset(credentials={"con": url}),
            "params:schema": MemoryDataset(SCHEMA),
            "params:ingestion": MemoryDataset({"chunk_rows": 100000, "only": None, **params}),
            "params:force": MemoryDataset(force),
            f"{name}_ingestion_report": report,
        }
    )
    pipeline = processed_pipeline() if processed else raw_pipeline()
    try:
        SequentialRunner().run(pipeline, catalog)
    except IngestionError as exc:
        exc.report = report.load()
        raise
    return report.load()


def query(tmp_path: Path, sql: str, url: str | None = None) -> list[tuple]:
    """Rows of ``sql`` on tmp_path's SQLite database, or on the database at ``url``."""
    if url is None:
        with sqlite3.connect(tmp_path / "churn.db") as conn:
            return conn.execute(sql).fetchall()
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def count(
    tmp_path: Path, table: str, source_file: str | None = None, url: str | None = None
) -> int:
    where = f" WHERE source_file = '{source_file}'" if source_file else ""
    return query(tmp_path, f"SELECT COUNT(*) FROM {table}{where}", url)[0][0]


# Every kind of bad file, as a real file, and what must become of it.
FILE_ERRORS = {
    "2026-01-01_00-00-01": (b"", "the file is empty"),
    "2026-01-01_00-00-02": (HEADER.encode(), "has a header but no data rows"),
    "2026-01-01_00-00-03": (
        (HEADER.replace(",churn", "") + "1,30,100.0,auto,0\n").encode(),
        "missing required column(s) churn",
    ),
    "2026-01-01_00-00-04": (
        bytes(range(256)) * 40 + b"\x89PNG\r\n\x1a\n\x00\xff",
        "a binary file, not a UTF-8 text CSV",
    ),
    "2026-01-01_00-00-05": ((HEADER + good_rows(1, 5)).replace(",", ";").encode(), "';'-delimited"),
    "2026-01-01_00-00-06": (  # a quote never closed: the rest of the file would be one cell
        (HEADER + good_rows(1, 1) + '2,31,"102.5,home,1,0\n' + good_rows(3, 2)).encode(),
        "EOF inside string starting at row 2",
    ),
}
ROW_ERRORS = {  # a valid row 1, then the bad row(s): file -> {row_number: reason fragment}
    "2026-01-02_00-00-01": (
        HEADER + good_rows(1, 1) + "2,forty,100.0,auto,0,0\n",
        {2: "age: 'forty' is not a number"},
    ),
    "2026-01-02_00-00-02": (
        HEADER + good_rows(1, 1) + "2,150,100.0,auto,0,0\n3,30,-5,auto,0,1\n",
        {2: "age: 150 is above the maximum 110", 3: "annual_premium: -5 is not greater than 0"},
    ),
    "2026-01-02_00-00-03": (
        HEADER + good_rows(1, 2) + "1,31,999.5,home,1,1\n2,32,102.5,life,2,0\n",
        {
            1: "appears on several rows with different values",
            3: "appears on several",
            4: "duplicate: repeats row 2",
        },
    ),
    "2026-01-02_00-00-04": (  # quoted cells with line breaks: a row is a record, not a line
        HEADER
        + good_rows(1, 1)
        + '2,30,102.5,"home\nowner",0,1\n"3\nb",31,103.5,auto,1,0\n'
        + good_rows(4, 1)
        + '5,33,"105\n.5",life,0,0\n'
        + good_rows(6, 1),
        {
            2: "policy_type: 'home\nowner' is not one of auto, home, life",
            5: "annual_premium: '105\n.5' is not a number",
        },
    ),
}


def check_bad_file_corpus(tmp_path: Path, url: str | None = None) -> None:
    """Every file of FILE_ERRORS and ROW_ERRORS, and a good one, ingested in one run into
    SQLite (``url`` None) or the database at ``url``: each gets its documented outcome."""
    raw = tmp_path / "raw"
    for stamp, (content, _) in FILE_ERRORS.items():
        snapshot(raw, stamp, content)
    for stamp, (content, _) in ROW_ERRORS.items():
        snapshot(raw, stamp, content)
    good = snapshot(raw, "2026-01-03_00-00-00", HEADER + good_rows(1, 20))

    with pytest.raises(IngestionError) as failure:
        ingest(tmp_path, url)

    report = failure.value.report
    errors = {e["source_file"]: e["error"] for e in report["errors"]}
    for stamp, (_, problem) in FILE_ERRORS.items():
        name = f"insurance_data_{stamp}.csv"
        assert problem in errors[f"raw/{name}"] and str(raw / name) in errors[f"raw/{name}"]
        assert problem in str(failure.value)
        # nothing of a broken file is written, not even its log row
        for table in ("policies_raw", "quarantine", "ingestion_log"):
            assert count(tmp_path, table, f"raw/{name}", url) == 0
    for stamp, (_, reasons) in ROW_ERRORS.items():
        source = f"raw/insurance_data_{stamp}.csv"
        quarantined = dict(
            query(
                tmp_path,
                f"SELECT `row_number`, reason FROM quarantine WHERE source_file='{source}'",
                url,
            )
        )
        assert set(quarantined) == set(reasons)
        for row, fragment in reasons.items():
            assert fragment in quarantined[row]
        loaded = count(tmp_path, "policies_raw", source, url)
        assert query(
            tmp_path,
            f"SELECT rows_loaded, rows_rejected, status FROM ingestion_log "
            f"WHERE source_file='{source}'",
            url,
        ) == [(loaded, len(reasons), "loaded")]
    assert count(tmp_path, "policies_raw", f"raw/{good.name}", url) == 20


def test_every_bad_file_gets_its_documented_outcome_and_the_good_files_still_load(tmp_path):
    check_bad_file_corpus(tmp_path)


def test_kedro_run_names_the_broken_file_and_exits_non_zero_after_loading_the_others(tmp_path):
    from kedro_project import make_project, run

    project = make_project(tmp_path / "project")
    shutil.copy(SAMPLE, project / "data/01_raw")
    snapshot(
        project / "data/01_raw",
        "2026-10-01_00-00-00",
        HEADER.replace(",", ";") + "1;30;1.0;auto;0;0\n",
    )

    result = run(project, "kedro", "run", "--pipelines", "ingest_raw", check=False)

    assert result.returncode != 0
    assert "insurance_data_2026-10-01_00-00-00.csv: missing required column(s)" in result.stderr
    assert "Warning" not in result.stderr  # no deprecation noise with the documented form
    with sqlite3.connect(project / "data/churn.db") as conn:
        logged = conn.execute(
            "SELECT source_file, rows_loaded, rows_rejected FROM ingestion_log"
        ).fetchall()
    assert logged == [(f"raw/{SAMPLE.name}", 4972, 28)]
    assert (
        run(project, "kedro", "run", "--pipeline", "ingest_raw", check=False).returncode != 0
    )  # still reported


def test_a_chunked_load_keeps_exactly_the_rows_a_whole_file_validation_keeps(tmp_path):
    # the sample has ~2% missing cells, rule breakers and duplicates; add ids that conflict
    # across chunks (a row loaded from chunk 1 must be retracted when chunk 3 contradicts it)
    text = SAMPLE.read_text()
    lines = text.splitlines(keepends=True)
    extra = [
        lines[5].replace(",0\n", ",1\n")
        if lines[5].endswith(",0\n")
        else lines[5].replace(",1\n", ",0\n"),
        lines[7],
        lines[300],
    ]
    content = "".join(lines + extra)
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", content)

    report = ingest(tmp_path, chunk_rows=97)

    whole = validate_frame(
        pd.read_csv(tmp_path / "raw" / "insurance_data_2026-11-01_06-00-00.csv", dtype=str),
        Schema.from_params(SCHEMA),
        "whole",
    )
    loaded = {r[0] for r in query(tmp_path, "SELECT customer_id FROM policies_raw")}
    quarantined = dict(query(tmp_path, "SELECT row_number, reason FROM quarantine"))
    assert loaded == set(whole.valid["customer_id"])
    assert quarantined == dict(zip(whole.rejected["row_number"], whole.rejected["reason"]))
    assert any("repeats row" in r for r in quarantined.values())
    assert report["loaded"][0]["rows_loaded"] == len(whole.valid)
    first = lines[5].split(",")[0]
    assert first not in loaded  # its id came back later with other values


@pytest.mark.parametrize("chunk_rows", [1, 7, 60])
def test_repeats_and_conflicting_ids_are_judged_over_the_whole_file_whatever_the_chunks(
    tmp_path, chunk_rows
):
    # 20 ids over 150 rows: most rows repeat an earlier one exactly, ids 0, 4, 8, ... come
    # with three sets of values, id 5 is sometimes padded with a space, id 7 breaks a rule
    def row(i: int) -> str:
        customer, variant = i % 20, (i // 20) % 3 if i % 20 % 4 == 0 else 0
        padded = " " if customer == 5 and i % 40 == 5 else ""
        return f"{padded}{customer},{30 + variant},100.5,auto,{-1 if customer == 7 else 1},0\n"

    rows = [row(i) for i in range(150)]
    path = snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + "".join(rows))

    ingest(tmp_path, chunk_rows=chunk_rows)

    whole = validate_frame(pd.read_csv(path, dtype=str), Schema.from_params(SCHEMA), "whole")
    reasons = dict(zip(whole.rejected["row_number"], whole.rejected["reason"]))
    assert {"repeats row", "several rows", "claims_count"} <= {
        w
        for r in reasons.values()
        for w in ("repeats row", "several rows", "claims_count")
        if w in r
    }
    assert dict(query(tmp_path, "SELECT row_number, reason FROM quarantine")) == reasons
    assert {r[0] for r in query(tmp_path, "SELECT customer_id FROM policies_raw")} == set(
        whole.valid["customer_id"]
    )


def test_a_second_run_and_a_redelivered_object_load_nothing_new(tmp_path):
    path = snapshot(tmp_path / "raw", "2026-11-01_06-00-00", SAMPLE.read_text())
    first = ingest(tmp_path)
    assert [r["rows_loaded"] for r in first["loaded"]] == [4972]

    assert ingest(tmp_path)["skipped"] == [f"raw/{path.name}"]
    path.write_text(SAMPLE.read_text())  # the same bytes delivered again: new mtime
    os.utime(path, (1, 1))
    again = ingest(tmp_path)

    assert again["loaded"] == [] and again["skipped"] == [f"raw/{path.name}"]
    assert count(tmp_path, "policies_raw") == 4972 and count(tmp_path, "quarantine") == 28
    assert count(tmp_path, "ingestion_log") == 1


def test_a_changed_object_is_reported_and_replaced_only_with_force(tmp_path):
    path = snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + good_rows(1, 30))
    ingest(tmp_path)
    path.write_text(HEADER + good_rows(100, 10) + "200,17,1.0,auto,0,0\n")

    with pytest.raises(IngestionError, match="changed since it was loaded.*force=true"):
        ingest(tmp_path)
    assert count(tmp_path, "policies_raw") == 30  # untouched

    report = ingest(tmp_path, force=True)

    assert report["loaded"][0]["status"] == "replaced"
    ids = {int(r[0]) for r in query(tmp_path, "SELECT customer_id FROM policies_raw")}
    assert ids == set(range(100, 110))
    assert query(tmp_path, "SELECT row_number FROM quarantine") == [(11,)]
    assert query(tmp_path, "SELECT rows_loaded, rows_rejected, status FROM ingestion_log") == [
        (10, 1, "replaced")
    ]


def test_a_failure_half_way_leaves_nothing_and_the_next_run_loads_the_object_whole(tmp_path):
    rows = good_rows(1, 500)
    broken = (
        HEADER
        + rows[: rows.index("301,")]
        + "301,30,1.0,auto,0,0,surplus\n"
        + rows[rows.index("302,") :]
    )
    path = snapshot(tmp_path / "raw", "2026-11-01_06-00-00", broken)
    other = snapshot(tmp_path / "raw", "2026-11-02_06-00-00", HEADER + good_rows(1000, 10))

    with pytest.raises(IngestionError) as failure:
        ingest(tmp_path, chunk_rows=100)  # chunks 1-3 are written before the parser hits line 302

    assert "Expected 6 fields in line 302, saw 7" in str(failure.value) and str(path) in str(
        failure.value
    )
    for table in ("policies_raw", "quarantine", "ingestion_log"):
        assert count(tmp_path, table, f"raw/{path.name}") == 0
    assert count(tmp_path, "policies_raw", f"raw/{other.name}") == 10  # the run went on

    path.write_text(HEADER + rows)
    report = ingest(tmp_path, chunk_rows=100)

    assert [r["rows_loaded"] for r in report["loaded"]] == [500]
    assert count(tmp_path, "policies_raw", f"raw/{path.name}") == 500


def test_processed_snapshots_load_with_their_split_and_apart_from_the_raw_one(tmp_path):
    name = "2026-11-01_06-00-00"
    snapshot(tmp_path / "raw", name, HEADER + good_rows(1, 10))
    processed = (
        HEADER.strip()
        + ",split\n"
        + "".join(
            line + (",train\n" if i % 5 else ",holdout\n")
            for i, line in enumerate(good_rows(1, 10).splitlines())
        )
        + "11,40,100.0,auto,0,1,validation\n"
    )
    snapshot(tmp_path / "processed", name, processed)

    ingest(tmp_path)
    report = ingest(tmp_path, processed=True)

    assert report["loaded"][0]["source_file"] == f"processed/insurance_data_{name}.csv"
    splits = dict(query(tmp_path, "SELECT split, COUNT(*) FROM policies_processed GROUP BY split"))
    assert splits == {"holdout": 2, "train": 8}
    assert (
        "split: 'validation' is not one of train, holdout"
        in query(tmp_path, "SELECT reason FROM quarantine WHERE source_file LIKE 'processed/%'")[0][
            0
        ]
    )
    assert count(tmp_path, "policies_raw") == 10 and count(tmp_path, "ingestion_log") == 2


def test_only_ingests_the_named_object(tmp_path):
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + good_rows(1, 3))
    wanted = snapshot(tmp_path / "raw", "2026-11-02_06-00-00", HEADER + good_rows(1, 4))

    report = ingest(tmp_path, only=f"raw/{wanted.name}")

    assert [r["source_file"] for r in report["loaded"]] == [f"raw/{wanted.name}"]
    assert count(tmp_path, "ingestion_log") == 1


def test_an_id_padded_with_spaces_in_one_chunk_is_the_same_id_in_another(tmp_path):
    # chunk 1 holds ' 5' (stripping changes it), chunk 2 holds '5' with other values
    content = (
        HEADER + " 5,30,100.5,auto,0,1\n" + good_rows(1, 2) + good_rows(5, 1) + good_rows(6, 2)
    )
    path = snapshot(tmp_path / "raw", "2026-11-01_06-00-00", content)

    ingest(tmp_path, chunk_rows=3)

    whole = validate_frame(pd.read_csv(path, dtype=str), Schema.from_params(SCHEMA), "whole")
    assert set(whole.rejected["row_number"]) == {1, 4}
    assert {r[0] for r in query(tmp_path, "SELECT row_number FROM quarantine")} == {1, 4}
    assert {r[0] for r in query(tmp_path, "SELECT customer_id FROM policies_raw")} == set(
        whole.valid["customer_id"]
    )


def test_a_copy_that_keeps_size_and_mtime_is_still_seen_as_changed(tmp_path):
    path = snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + good_rows(1, 30))
    ingest(tmp_path)
    stat = path.stat()
    text = path.read_text()
    swapped = text.replace("\n1,", "\n9,", 1)  # the same size, other content
    assert len(swapped) == len(text) and swapped != text
    path.write_text(swapped)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as cp -p / rsync -t / touch -r

    with pytest.raises(IngestionError, match="changed since it was loaded.*force=true"):
        ingest(tmp_path)


def test_reload_loads_unchanged_objects_again_in_one_transaction(tmp_path):
    first = snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + good_rows(1, 30))
    snapshot(tmp_path / "raw", "2026-11-02_06-00-00", HEADER + good_rows(100, 5))
    ingest(tmp_path)

    one = ingest(tmp_path, reload=first.name)
    assert [(r["source_file"], r["status"]) for r in one["loaded"]] == [
        (f"raw/{first.name}", "replaced")
    ]
    assert one["skipped"] == ["raw/insurance_data_2026-11-02_06-00-00.csv"]
    assert count(tmp_path, "policies_raw") == 35 and count(tmp_path, "ingestion_log") == 2

    every = ingest(tmp_path, reload="all")
    assert len(every["loaded"]) == 2 and every["skipped"] == []
    assert count(tmp_path, "policies_raw") == 35

    with pytest.raises(IngestionError, match="nope.csv: no such object"):
        ingest(tmp_path, reload=["nope.csv"])


def test_staging_folders_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    from churn_kedro.ingestion.store import STAGING_PREFIX, remove_stale_staging

    dead = tmp_path / f"{STAGING_PREFIX}999999999-abc"  # no such process
    live = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-def"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "0.csv").write_text("validated customer rows\n")

    assert remove_stale_staging(str(tmp_path)) == [dead.name]
    assert not dead.exists() and (live / "0.csv").exists()


def oversized_rows() -> str:
    """Row 2 has a 100 KB category, row 3 a 10 MB number cell; rows 1 and 4 are good."""
    return (
        HEADER
        + good_rows(1, 1)
        + f"2,30,100.0,{'x' * 100_000},0,0\n"
        + f"3,{'9' * 10_000_000},100.0,auto,0,0\n"
        + good_rows(4, 1)
    )


def check_oversized_outcome(rows: list[tuple], log: str) -> None:
    """rows: (row_number, reason, record) of the quarantine."""
    from churn_kedro.schema import MAX_REASON_CHARS, MAX_RECORD_CHARS, TRUNCATED

    assert [r[0] for r in rows] == [2, 3]
    assert "policy_type: 100000 characters, more than the 255" in rows[0][1]
    assert f"age: '{'9' * 60}... (10000000 characters)' is not finite" in rows[1][1]
    for _, reason, record in rows:
        assert len(reason) <= MAX_REASON_CHARS and len(record) <= MAX_RECORD_CHARS
        assert record.endswith(TRUNCATED)
    assert "x" * 1000 not in log and "9" * 1000 not in log  # no row data in the log


def test_oversized_cells_are_quarantined_bounded_and_the_next_file_loads(tmp_path, caplog):
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", oversized_rows())
    snapshot(tmp_path / "raw", "2026-11-02_06-00-00", HEADER + good_rows(10, 5))

    report = ingest(tmp_path)

    assert [r["rows_loaded"] for r in report["loaded"]] == [2, 5]
    check_oversized_outcome(
        query(tmp_path, "SELECT row_number, reason, record FROM quarantine ORDER BY 1"),
        caplog.text,
    )


def test_a_file_whose_every_row_is_rejected_is_a_file_error_naming_the_reasons(tmp_path):
    bad = snapshot(
        tmp_path / "raw",
        "2026-11-01_06-00-00",
        HEADER + "".join(f"{i},30,100.0,boat,0,0\n" for i in range(1, 6)) + "6,12,1.0,auto,0,0\n",
    )
    snapshot(tmp_path / "raw", "2026-11-02_06-00-00", HEADER + good_rows(10, 5))

    with pytest.raises(IngestionError) as failure:
        ingest(tmp_path)

    message = str(failure.value)
    assert f"raw/{bad.name}" in message and "every one of its 6 rows was rejected" in message
    assert "policy_type: 'boat' is not one of auto, home, life (5 rows)" in message
    assert "age: 12 is below the minimum 18 (1 row)" in message
    assert count(tmp_path, "quarantine", f"raw/{bad.name}") == 0  # nothing of it written
    assert count(tmp_path, "ingestion_log") == 1 and count(tmp_path, "policies_raw") == 5


def test_a_file_without_any_label_is_a_file_error_not_a_crash(tmp_path):
    # every label of the chunk missing: once a crash of the run (NA into int64)
    bad = snapshot(
        tmp_path / "raw", "2026-11-01_06-00-00", HEADER + "1,30,1.5,auto,0,\n2,31,2.5,home,1,\n"
    )
    snapshot(tmp_path / "raw", "2026-11-02_06-00-00", HEADER + good_rows(10, 5))

    with pytest.raises(IngestionError) as failure:
        ingest(tmp_path)

    assert f"raw/{bad.name}: every one of its 2 rows was rejected" in str(failure.value)
    assert "churn: missing (2 rows)" in str(failure.value)
    assert count(tmp_path, "ingestion_log") == 1 and count(tmp_path, "policies_raw") == 5


def test_a_table_of_another_schema_stops_in_one_line_without_rows(tmp_path):
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", HEADER + good_rows(1, 5))
    ingest(tmp_path)  # policies_raw now has the insurance columns
    other = dict(SCHEMA, id_column="CustomerID")

    from churn_kedro.database import TableMismatch, create_engine, create_tables

    with pytest.raises(TableMismatch) as failure:
        create_tables(
            create_engine(f"sqlite:///{tmp_path / 'churn.db'}"), Schema.from_params(other)
        )
    message = str(failure.value)
    assert "\n" not in message and message.startswith("table policies_raw in sqlite:///")
    assert "'customer_id'" in message and "'CustomerID'" in message
    assert "give this environment its own database" in message


def test_an_id_longer_than_the_maximum_is_quarantined_with_its_reason(tmp_path):
    # two ids that share their first 128 characters: a column cut to 128 would merge them
    prefix = "P" * 128
    content = (
        HEADER + f"{prefix}A,30,100.5,auto,0,1\n{prefix}B,31,10.5,home,1,0\n" + good_rows(1, 2)
    )
    snapshot(tmp_path / "raw", "2026-11-01_06-00-00", content)

    ingest(tmp_path)

    assert query(tmp_path, "SELECT row_number, reason FROM quarantine ORDER BY row_number") == [
        (1, "customer_id: 129 characters, longer than the maximum of 128"),
        (2, "customer_id: 129 characters, longer than the maximum of 128"),
    ]
    assert {r[0] for r in query(tmp_path, "SELECT customer_id FROM policies_raw")} == {"1", "2"}
