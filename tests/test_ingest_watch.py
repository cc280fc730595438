"""`python -m churn_kedro.watch`: the local stand-in for the S3 event rules."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time

import pytest
from kedro_project import env, make_project
from test_ingest import HEADER, SAMPLE, good_rows, snapshot

pytestmark = pytest.mark.slow


def logged(project) -> list[tuple]:
    db = project / "data/churn.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute(
                "SELECT source_file, rows_loaded FROM ingestion_log ORDER BY source_file"
            ).fetchall()
        except sqlite3.OperationalError:  # the tables are being created
            return []


def test_watch_ingests_each_object_dropped_into_the_raw_and_processed_folders(tmp_path):
    project = make_project(tmp_path)
    shutil.copy(SAMPLE, project / "data/01_raw")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "churn_kedro.watch", "--interval", "0.5"],
        cwd=project,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        expected = [(f"raw/{SAMPLE.name}", 4972)]
        deadline = time.monotonic() + 120
        while (
            logged(project) != expected and time.monotonic() < deadline and watcher.poll() is None
        ):
            time.sleep(0.5)
        assert logged(project) == expected

        snapshot(project / "data/01_raw", "2026-11-02_06-00-00", HEADER + good_rows(1, 4))
        processed = (
            HEADER.strip()
            + ",split\n"
            + "".join(f"{line},train\n" for line in good_rows(1, 3).splitlines())
        )
        snapshot(project / "data/03_primary/processed", "2026-11-02_06-00-00", processed)
        expected = sorted(
            expected
            + [
                ("processed/insurance_data_2026-11-02_06-00-00.csv", 3),
                ("raw/insurance_data_2026-11-02_06-00-00.csv", 4),
            ]
        )
        while (
            logged(project) != expected and time.monotonic() < deadline and watcher.poll() is None
        ):
            time.sleep(0.5)
        assert logged(project) == expected
    finally:
        watcher.terminate()
        output = watcher.communicate(timeout=30)[0]
    assert output.count("New object") == 3, output[-3000:]
