"""The ingestion store (see docs/architecture.md: storage): one object, one transaction.

:class:`IngestionDatabase` is the project's tables on one engine (SQLite by default,
MySQL on AWS). :meth:`~IngestionDatabase.load_object` writes an object's good rows,
quarantined rows and ``ingestion_log`` row in a single transaction: an error half-way,
or a dropped connection, leaves nothing of it. :meth:`~IngestionDatabase.replace_scores`
does the same for one batch of ``churn_scores``. Kedro reaches it through
``churn_kedro.datasets.IngestionDatabaseDataset`` and ``ChurnScoresDataset``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from churn_kedro import database
from churn_kedro.schema import REASON, Schema, SnapshotError

logger = logging.getLogger(__name__)


class AlreadyIngested(Exception):
    """Another run committed this object first (its ingestion_log row exists)."""


class ObjectLoadError(RuntimeError):
    """The database refused an object's rows; nothing of the object was written. The
    message names the object and the server's words, never the rows."""


STAGING_PREFIX = "churn-ingest-"


def remove_stale_staging(root: str | None = None) -> list[str]:
    """Remove staging folders (validated rows as CSV, MySQL path) left by runs that died
    without cleaning up (kill -9, a lost machine); a folder's name holds its process id.
    Returns the folders removed."""
    root = root or tempfile.gettempdir()
    removed = []
    for name in os.listdir(root):
        if not name.startswith(STAGING_PREFIX):
            continue
        pid = name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and _process_alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        removed.append(name)
    if removed:
        logger.info("removed %d staging folder(s) left by earlier runs", len(removed))
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Chunk:
    """What one chunk of a file contributes: typed valid rows (with ``row_number``),
    rejected rows (row_number, reason, record), and ids whose rows loaded from earlier
    chunks turned out to conflict with a later row and must move to quarantine."""

    valid: pd.DataFrame
    rejected: pd.DataFrame
    retract: dict[str, str] = field(default_factory=dict)  # id -> reason


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _column_values(series: pd.Series) -> list[Any]:
    """A column as plain Python values for the DB driver, None for missing."""
    return series.astype(object).where(series.notna(), None).tolist()


class IngestionDatabase:
    """The ingestion tables on one engine, for one schema."""

    def __init__(self, engine: sa.Engine, schema: Schema | None = None):
        self.engine = engine
        self.metadata = database.create_tables(engine, schema)
        self.schema = schema

    @property
    def is_mysql(self) -> bool:
        return self.engine.dialect.name in ("mysql", "mariadb")

    def table(self, name: str) -> sa.Table:
        return self.metadata.tables[name]

    def ingestion_log(self) -> dict[str, dict[str, Any]]:
        log = self.table(database.INGESTION_LOG)
        with self.engine.connect() as conn:
            return {row.source_file: dict(row._mapping) for row in conn.execute(sa.select(log))}

    def load_object(
        self,
        table_name: str,
        source_file: str,
        chunks: Iterable[Chunk],
        finish: Callable[[], dict[str, Any]],
        replace: bool = False,
    ) -> dict[str, Any]:
        """Write an object in one transaction; ``finish()`` is called after the last
        chunk and returns the log fields known only then (checksum, rows_read, ...).
        Raises AlreadyIngested when another run got there first."""
        table = self.table(table_name)
        log = self.table(database.INGESTION_LOG)
        quarantine = self.table(database.QUARANTINE)
        with refused_as_object_error(source_file):
            return self._load_object(table, log, quarantine, source_file, chunks, finish, replace)

    def _load_object(self, table, log, quarantine, source_file, chunks, finish, replace):
        started = _now()
        with self.engine.begin() as conn:
            claim_object(conn, table, log, quarantine, source_file, replace, started)
            counts = {"loaded": 0, "rejected": 0}
            reasons: Counter[str] = Counter()  # each broken rule, for a file rejected whole

            def write(chunk: Chunk, staged: str | None) -> None:
                ingested_at = _now()
                if chunk.retract:
                    moved = self._retract(
                        conn, table, quarantine, source_file, chunk.retract, ingested_at
                    )
                    counts["loaded"] -= moved
                    counts["rejected"] += moved
                    reasons.update(chunk.retract.values())
                if staged is not None:
                    self._load_data_infile(
                        conn, table, staged, len(chunk.valid), source_file, ingested_at
                    )
                    os.unlink(staged)
                elif len(chunk.valid):
                    self._bulk_insert(conn, table, chunk.valid, source_file, ingested_at)
                counts["loaded"] += len(chunk.valid)
                _insert_quarantine(conn, quarantine, source_file, chunk.rejected, ingested_at)
                if len(chunk.rejected):
                    counts["rejected"] += len(chunk.rejected)
                    reasons.update(chunk.rejected[REASON].str.split("; ").explode().tolist())
                logger.info(
                    "%s: %d rows loaded, %d quarantined so far",
                    source_file,
                    counts["loaded"],
                    counts["rejected"],
                )

            # The database writes chunk k while this thread reads, validates and (on MySQL)
            # stages chunk k+1 as a CSV file: the server never waits for Python work between
            # two chunks. One writer at a time, so the connection is never used concurrently.
            with (
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer") as writer,
                tempfile.TemporaryDirectory(prefix=f"{STAGING_PREFIX}{os.getpid()}-") as staging,
            ):
                pending = None
                try:
                    for number, chunk in enumerate(chunks):
                        staged = None
                        if self.is_mysql and len(chunk.valid):
                            staged = os.path.join(staging, f"{number}.csv")
                            self._stage_csv(table, chunk.valid, staged)
                        if pending is not None:
                            pending.result()
                        pending = writer.submit(write, chunk, staged)
                finally:
                    if pending is not None:
                        error = pending.exception()  # wait: no write may outlive the transaction
                if pending is not None and error is not None:
                    raise error
            loaded, rejected = counts["loaded"], counts["rejected"]
            if rejected and not loaded:  # a wrong configuration, not a few bad rows
                raise SnapshotError(
                    source_file,
                    f"every one of its {rejected} rows was rejected; the most common "
                    f"reasons: {_top_reasons(reasons)}. Fix the file or the schema "
                    "parameters, then run again",
                )
            return complete_object(conn, log, source_file, loaded, rejected, replace, finish())

    def replace_scores(
        self, source_file: str, model_version: str, scores: pd.DataFrame, rejected: pd.DataFrame
    ) -> None:
        """One batch of ``churn_scores`` in one transaction: the rows a model gave one file
        replace those it gave the file before (scoring again never duplicates), and the
        file's rejected rows replace its ``quarantine`` rows."""
        table, quarantine = self.table(database.CHURN_SCORES), self.table(database.QUARANTINE)
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(table).where(
                    table.c.model_version == model_version, table.c.source_file == source_file
                )
            )
            if len(scores):
                conn.execute(table.insert(), scores.to_dict("records"))
            conn.execute(sa.delete(quarantine).where(quarantine.c.source_file == source_file))
            _insert_quarantine(conn, quarantine, source_file, rejected, _now())

    def _retract(self, conn, table, quarantine, source_file, retract: dict[str, str], when) -> int:
        """Move rows loaded from earlier chunks to quarantine (their id conflicts with a later row)."""
        id_column = table.c[self.schema.id_column]
        condition = sa.and_(table.c.source_file == source_file, id_column.in_(list(retract)))
        rows = conn.execute(sa.select(table).where(condition)).mappings().all()
        conn.execute(sa.delete(table).where(condition))
        record_columns = self.schema.required_columns(labelled=False)
        if rows:
            conn.execute(
                quarantine.insert(),
                [
                    {
                        "source_file": source_file,
                        "row_number": row["row_number"],
                        "reason": retract[row[self.schema.id_column]],
                        "quarantined_at": when,
                        "record": json.dumps({c: row[c] for c in record_columns}, default=str),
                    }
                    for row in rows
                ],
            )
        return len(rows)

    def _bulk_insert(
        self, conn, table: sa.Table, rows: pd.DataFrame, source_file: str, when
    ) -> None:
        """SQLite: executemany with plain tuples, the driver's fastest path (no per-row dicts)."""
        columns = self._loaded_columns(table)
        values = [_column_values(rows[c]) for c in columns]
        names = ", ".join(['"source_file"', '"ingested_at"', *(f'"{c}"' for c in columns)])
        marks = ", ".join("?" * (len(columns) + 2))
        constants = (source_file, when.isoformat(sep=" "))
        conn.exec_driver_sql(
            f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})',
            [constants + row for row in zip(*values)],
        )

    @staticmethod
    def _loaded_columns(table: sa.Table) -> list[str]:
        return [c.name for c in table.columns if c.name not in ("source_file", "ingested_at")]

    def _stage_csv(self, table: sa.Table, rows: pd.DataFrame, path: str) -> None:
        """MySQL: the validated rows as a CSV file for LOAD DATA LOCAL INFILE (pyarrow writes
        CSV ~10x faster than to_csv). It always quotes strings, so the unquoted word NULL
        it writes for a missing value is read as NULL, and a text 'NULL' stays text."""
        pa_csv.write_csv(
            pa.Table.from_pandas(rows[self._loaded_columns(table)], preserve_index=False),
            path,
            pa_csv.WriteOptions(include_header=False, quoting_style="needed", null_string="NULL"),
        )

    def _load_data_infile(
        self, conn, table: sa.Table, path: str, rows: int, source_file: str, when
    ) -> None:
        """LOAD DATA LOCAL INFILE of a staged chunk: the server's own bulk path. Columns
        are assigned directly (no per-row NULLIF expressions: they cost the server ~20%)."""
        columns = ", ".join(f"`{c}`" for c in self._loaded_columns(table))
        loaded = conn.exec_driver_sql(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table.name}` CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' "
            f"LINES TERMINATED BY '\\n' ({columns}) SET `source_file` = %s, `ingested_at` = %s",
            (path, source_file, when),
        ).rowcount
        # LOCAL implies IGNORE: a row whose key exists is skipped with a mere warning
        if loaded != rows:
            raise ObjectLoadError(
                f"{source_file}: LOAD DATA loaded {loaded} of {rows} validated rows "
                f"into {table.name} (a key already there?)"
            )


@contextlib.contextmanager
def refused_as_object_error(source_file: str) -> Iterator[None]:
    """A database error inside an object's load becomes that object's ObjectLoadError,
    with the server's words only: the statement's parameters (customer rows) stay out."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise ObjectLoadError(
            f"{source_file}: the database refused it: {_server_words(exc)}"
        ) from None


def claim_object(
    conn,
    table: sa.Table,
    log: sa.Table,
    quarantine: sa.Table,
    source_file: str,
    replace: bool,
    started,
) -> None:
    """The first step of an object's transaction (both engines): with ``replace`` its old
    rows, quarantine and log row go; then its log row is written. The log row goes first:
    a concurrent run for the same object blocks on its key, then fails on it instead of
    loading the rows a second time (AlreadyIngested)."""
    if replace:
        for t in (table, quarantine, log):
            conn.execute(sa.delete(t).where(t.c.source_file == source_file))
    try:
        conn.execute(
            log.insert().values(
                source_file=source_file,
                target_table=table.name,
                checksum="",
                size_bytes=0,
                rows_read=0,
                rows_loaded=0,
                rows_rejected=0,
                status="loading",
                started_at=started,
                finished_at=started,
            )
        )
    except sa.exc.IntegrityError:
        raise AlreadyIngested(source_file) from None


def complete_object(
    conn, log: sa.Table, source_file: str, loaded: int, rejected: int, replace: bool, fields: dict
) -> dict[str, Any]:
    """The last step of an object's transaction (both engines): its log row gets the
    counts and the fields known only at the end (checksum, rows_read, ...); returns the
    object's entry of the run's report."""
    result = {
        "rows_loaded": loaded,
        "rows_rejected": rejected,
        "status": "replaced" if replace else "loaded",
        **fields,
    }
    conn.execute(
        log.update().where(log.c.source_file == source_file).values(finished_at=_now(), **result)
    )
    return {"source_file": source_file, **result}


def _insert_quarantine(
    conn, quarantine: sa.Table, source_file: str, rejected: pd.DataFrame, when
) -> None:
    if len(rejected):
        conn.execute(
            quarantine.insert(),
            [
                {
                    "source_file": source_file,
                    "row_number": int(r.row_number),
                    "reason": r.reason,
                    "record": r.record,
                    "quarantined_at": when,
                }
                for r in rejected.itertuples(index=False)
            ],
        )


def _server_words(exc: sa.exc.DBAPIError) -> str:
    """The driver's own message (e.g. MySQL's error code and text), without the SQL."""
    return str(exc.orig).strip()[:500] if exc.orig is not None else type(exc).__name__


def _top_reasons(reasons: Counter[str], most: int = 5) -> str:
    return "; ".join(
        f"{reason} ({n} row{'s' if n > 1 else ''})" for reason, n in reasons.most_common(most)
    )
