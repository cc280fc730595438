"""Exactly once under a killed Spark job: `kedro run --pipelines ingest_raw --env spark`
into MariaDB, in a throwaway project copy, killed with SIGKILL (its whole process group:
kedro, the JVM; Spark's Python workers die with the JVM) at three points of one object's
load, each reached by watching the database rather than a clock:

1. while the executors stage rows through JDBC (the test holds a read lock on the
   staging table, so an executor's insert is in flight when the kill comes);
2. inside the object's transaction, every row moved into the target table, before the
   commit (a read lock on ``quarantine`` holds the transaction's next statement);
3. after the commit, before the staging tables are dropped (a read lock on one of them).

After each kill the target holds nothing of the object, or all of it with its
ingestion_log row; each next run drops the dead runs' staging tables first, and the
object ends up loaded whole, exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from kedro_project import BIN, env, make_project, run
from test_ingest import HEADER, good_rows, snapshot

pytest.importorskip("pyspark")
pytestmark = pytest.mark.mysql

ROWS = 100_000
SOURCE = "raw/insurance_data_2026-11-01_06-00-00.csv"
BAD = "100001,forty,100.5,auto,0,0\n100002,30,-5,home,1,1\n"  # two rows to quarantine


class Database:
    """The test's view of the run's database: one short connection a question, and a
    connection of its own (``blocker``) for the locks that hold the run at a point."""

    def __init__(self, url: str):
        self.engine = sa.create_engine(url, poolclass=sa.NullPool)
        self.name = sa.make_url(url).database
        self.blocker = self.engine.connect()
        self.blocker_id = self.blocker.exec_driver_sql("SELECT CONNECTION_ID()").scalar()

    def rows(self, sql: str, *params) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql, params or None).all()]

    def staging(self) -> list[str]:
        return sorted(
            name
            for (name,) in self.rows(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE %s",
                self.name,
                "stage\\_%",
            )
        )

    def run_statements(self) -> list[str]:
        """The statements the run's connections are executing (their sleeping ones: '')."""
        return [
            info or ""
            for (info,) in self.rows(
                "SELECT INFO FROM information_schema.PROCESSLIST "
                "WHERE DB = %s AND ID NOT IN (CONNECTION_ID(), %s)",
                self.name,
                self.blocker_id,
            )
        ]

    def object_state(self) -> tuple[int, int, list[tuple]]:
        """(rows of the object in policies_raw, in quarantine, its ingestion_log rows)."""
        ((loaded,),) = self.rows("SELECT COUNT(*) FROM policies_raw WHERE source_file = %s", SOURCE)
        ((quarantined,),) = self.rows(
            "SELECT COUNT(*) FROM quarantine WHERE source_file = %s", SOURCE
        )
        log = self.rows(
            "SELECT rows_read, rows_loaded, rows_rejected, status FROM ingestion_log "
            "WHERE source_file = %s",
            SOURCE,
        )
        return loaded, quarantined, log

    def lock(self, table: str) -> None:
        self.blocker.exec_driver_sql(f"LOCK TABLES `{table}` READ")

    def unlock(self) -> None:
        self.blocker.exec_driver_sql("UNLOCK TABLES")

    def close(self) -> None:
        self.blocker.close()
        self.engine.dispose()


class Run:
    """`kedro run --pipelines ingest_raw --env spark` in a session (process group) of its own."""

    def __init__(self, project: Path, log: Path):
        self.log = log
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                [str(BIN / "kedro"), "run", "--pipelines", "ingest_raw", "--env", "spark"],
                cwd=project,
                env=env(SPARK_LOCAL_DIRS=str(project / "spark-local")),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, condition, what: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"the run ended before {what}:\n{self.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout} s:\n{self.output()[-4000:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL to the whole group; then wait until every process of the run is gone
        (Spark's Python daemon, in a group of its own, exits when the JVM's pipe closes)."""
        tree = psutil.Process(self.process.pid).children(recursive=True)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        _, alive = psutil.wait_procs(tree, timeout=30)
        for straggler in alive:  # ours: started by this run
            straggler.kill()
        assert alive == [], f"still running after the kill: {alive}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


@pytest.mark.slow
def test_a_spark_ingestion_killed_at_any_point_loads_the_object_once_and_whole(
    tmp_path, fresh_mysql_url
):
    project = make_project(tmp_path / "project")
    (project / "conf" / "spark" / "credentials.yml").write_text(
        f"churn_db:\n  con: {fresh_mysql_url}\n"
    )
    snapshot(project / "data" / "01_raw", "2026-11-01_06-00-00", HEADER + good_rows(1, ROWS) + BAD)
    db = Database(fresh_mysql_url)
    runs: list[Run] = []

    def start() -> Run:
        runs.append(Run(project, tmp_path / f"run{len(runs) + 1}.log"))
        return runs[-1]

    def killed(run: Run) -> None:
        run.kill()
        db.unlock()
        # the server has seen every connection of the dead run go (its transaction rolled back)
        deadline = time.monotonic() + 120
        while db.run_statements():
            assert time.monotonic() < deadline, db.run_statements()
            time.sleep(0.1)

    try:
        # 1. killed while staging: an executor's JDBC insert waits on the test's lock
        first = start()
        first.wait_for(lambda: any(t.startswith("stage_rows_") for t in db.staging()), "staging")
        (rows_table,) = [t for t in db.staging() if t.startswith("stage_rows_")]
        db.lock(rows_table)
        first.wait_for(
            lambda: any(s.startswith(f"INSERT INTO {rows_table}") for s in db.run_statements()),
            "an insert into the staging table",
        )
        ((staged,),) = db.rows(f"SELECT COUNT(*) FROM `{rows_table}`")
        killed(first)
        assert staged < ROWS  # the kill came half-way through the staging
        assert db.object_state() == (0, 0, [])
        left_by_first = db.staging()
        assert rows_table in left_by_first  # the dead run could not drop it

        # 2. killed inside the transaction: every row moved, the quarantine insert held
        second = start()
        second.wait_for(lambda: set(db.staging()) - set(left_by_first), "its own staging")
        assert not set(left_by_first) & set(db.staging())  # dropped when the run started
        db.lock("quarantine")
        second.wait_for(
            lambda: any(s.startswith("INSERT INTO `quarantine`") for s in db.run_statements()),
            "the transaction's quarantine insert",
        )
        ((moved,),) = db.rows(
            "SELECT trx_rows_modified FROM information_schema.INNODB_TRX "
            "JOIN information_schema.PROCESSLIST ON ID = trx_mysql_thread_id "
            "WHERE DB = %s AND ID <> %s",
            db.name,
            db.blocker_id,
        )
        assert moved > ROWS  # the log row and every valid row, not committed
        killed(second)
        assert db.object_state() == (0, 0, [])

        # 3. killed after the commit, while its staging tables are being dropped
        left_by_second = db.staging()
        third = start()

        def own(prefix: str) -> list[str]:
            return [t for t in db.staging() if t.startswith(prefix) and t not in left_by_second]

        third.wait_for(lambda: own("stage_bad_"), "staging")  # the rows are staged
        (rows_table,) = own("stage_rows_")
        db.lock(rows_table)  # reading it stays possible: only the drop waits
        third.wait_for(
            lambda: any(
                s.startswith(f"DROP TABLE IF EXISTS `{rows_table}`") for s in db.run_statements()
            ),
            "the staging tables' drop",
        )
        assert db.object_state() == (ROWS, 2, [(ROWS + 2, ROWS, 2, "loaded")])  # committed
        killed(third)
        assert db.object_state() == (ROWS, 2, [(ROWS + 2, ROWS, 2, "loaded")])

        # 4. the next run drops what the dead runs left and loads nothing twice
        result = run(
            project,
            "kedro",
            "run",
            "--pipelines",
            "ingest_raw",
            "--env",
            "spark",
            SPARK_LOCAL_DIRS=str(project / "spark-local"),
        )
        output = result.stdout + result.stderr
        assert "Ingestion into policies_raw: 0 loaded, 1 skipped, 0 failed" in output
        assert db.object_state() == (ROWS, 2, [(ROWS + 2, ROWS, 2, "loaded")])
        assert db.rows("SELECT COUNT(*), COUNT(DISTINCT `row_number`) FROM policies_raw") == [
            (ROWS, ROWS)
        ]
        assert db.staging() == []
        for after_a_kill in [*runs[1:], result]:  # each dropped the dead run's tables first
            text = output if after_a_kill is result else after_a_kill.output()
            assert "staging table(s) left by runs that died" in text
    finally:
        for each in runs:
            each.stop()
        db.close()


def test_only_the_staging_tables_whose_lease_is_free_are_dropped(fresh_mysql_url):
    from churn_kedro.database import create_engine
    from churn_kedro.spark.store import SparkIngestionDatabase, staging_name

    engine = create_engine(fresh_mysql_url)
    db = Database(fresh_mysql_url)
    live_store = SparkIngestionDatabase(engine)
    dead = staging_name("rows", SOURCE, "0badc0de")  # a run that died: nobody holds its lease
    try:
        with live_store.staging_tables(SOURCE, "rows", "bad") as live:
            with engine.begin() as conn:
                for table in [*live, dead, "stage_of_another_application"]:
                    conn.exec_driver_sql(f"CREATE TABLE `{table}` (id INT)")

            # another store opens on the database (another run, maybe on another machine)
            other = SparkIngestionDatabase(create_engine(fresh_mysql_url))
            assert db.staging() == sorted([*live, "stage_of_another_application"])
            assert other.remove_stale_staging() == []
        assert db.staging() == ["stage_of_another_application"]  # dropped with their lease
        assert db.rows("SELECT IS_USED_LOCK(%s)", "churn_kedro_staging_0badc0de") == [(None,)]
    finally:
        db.close()
        engine.dispose()
