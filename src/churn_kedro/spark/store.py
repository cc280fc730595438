"""The ingestion store on Spark (see docs/architecture.md: engines): exactly once per
object, as :class:`churn_kedro.ingestion.store.IngestionDatabase`.

On MySQL the executors write an object's good and rejected rows through JDBC into two
staging tables named after the object; then one transaction on the driver moves them
into the target table and ``quarantine`` together with the ``ingestion_log`` row. A job
killed before that commit leaves nothing of the object in the tables (its staging tables
at most, dropped by the next run), and the rerun loads it whole. On SQLite (the local
default) the rows come to the driver a partition at a time and go through the pandas
store's own transaction.

Each object's staging tables live under a lease: a named lock (``GET_LOCK``) held on a
connection of their own while they exist. A run that dies (kill -9, a lost machine)
loses its connections and with them the lock, so the next store on the database drops
its tables (:meth:`SparkIngestionDatabase.remove_stale_staging`), whichever machine it
runs on; a live run's tables are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from pyspark.sql import DataFrame

from churn_kedro import database
from churn_kedro.ingestion.store import (
    IngestionDatabase,
    ObjectLoadError,
    _insert_quarantine,
    _now,
    claim_object,
    complete_object,
    refused_as_object_error,
)
from churn_kedro.schema import Schema, SnapshotError
from churn_kedro.spark.validation import SparkValidation

logger = logging.getLogger(__name__)

# Spark picks its MySQL dialect by the URL scheme: jdbc:mysql: (which MariaDB's driver 2.x accepts)
DEFAULT_JDBC = {"scheme": "mysql", "driver": "org.mariadb.jdbc.Driver"}


STAGING_TABLE = re.compile(r"stage_(rows|bad|scores)_\w*_[0-9a-f]{8}_(?P<lease>[0-9a-f]{8})")
LEASE_LOCK = "churn_kedro_staging_"  # + the lease's token: the named lock of a run's tables


def staging_name(kind: str, source_file: str, lease: str) -> str:
    """A staging table named after the object and its lease (so that two runs never
    share one), within MySQL's 64 characters."""
    stem = re.sub(r"[^0-9A-Za-z]+", "_", source_file.rsplit("/", 1)[-1].removesuffix(".csv"))
    digest = hashlib.sha256(source_file.encode()).hexdigest()[:8]
    return f"stage_{kind}_{stem[:30]}_{digest}_{lease}"


class SparkIngestionDatabase(IngestionDatabase):
    """The ingestion tables, written from Spark. ``jdbc``: the JDBC URL scheme and
    driver class (MariaDB Connector/J's by default, locally and on Glue; its TLS
    properties are MariaDB's: ``database.jdbc_tls_options``)."""

    def __init__(self, engine: sa.Engine, schema: Schema | None = None, jdbc: dict | None = None):
        super().__init__(engine, schema)
        self.jdbc = {**DEFAULT_JDBC, **(jdbc or {})}
        if self.is_mysql:
            self.remove_stale_staging()

    def remove_stale_staging(self) -> list[str]:
        """Drop the staging tables whose lease no connection holds: those of runs that
        died before they could drop them. Returns the tables dropped."""
        with self.engine.connect() as conn:
            names = conn.exec_driver_sql(
                "SELECT TABLE_NAME FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE %s",
                ("stage\\_%",),
            ).scalars()
            stale = [
                name
                for name in names
                if (found := STAGING_TABLE.fullmatch(name))
                and conn.exec_driver_sql(
                    "SELECT IS_USED_LOCK(%s)", (LEASE_LOCK + found["lease"],)
                ).scalar()
                is None
            ]
        if stale:
            self.drop(*stale)
            logger.info(
                "dropped %d staging table(s) left by runs that died: %s",
                len(stale),
                ", ".join(stale),
            )
        return stale

    @contextlib.contextmanager
    def staging_tables(self, source_file: str, *kinds: str) -> Iterator[list[str]]:
        """The names of an object's staging tables (one per kind), under a lease taken
        before they exist and released once they are dropped."""
        token = secrets.token_hex(4)
        names = [staging_name(kind, source_file, token) for kind in kinds]
        with self.engine.connect() as lease:
            lock = LEASE_LOCK + token
            if lease.exec_driver_sql("SELECT GET_LOCK(%s, 0)", (lock,)).scalar() != 1:
                raise ObjectLoadError(f"{source_file}: the staging lease {lock} is taken")
            lease.commit()
            try:
                yield names
            finally:
                try:
                    self.drop(*names)
                finally:  # a lease whose connection broke is released by the server
                    with contextlib.suppress(sa.exc.DBAPIError):
                        lease.exec_driver_sql("DO RELEASE_LOCK(%s)", (lock,))

    def jdbc_options(self, table: str) -> dict[str, str]:
        url = self.engine.url
        options = {
            "url": f"jdbc:{self.jdbc['scheme']}://{url.host}:{url.port or 3306}/{url.database}",
            "driver": self.jdbc["driver"],
            "dbtable": table,
            "user": url.username or "",
            "batchsize": "10000",
            "isolationLevel": "NONE",  # a staging table: the transaction that counts is ours
            # a batch as multi-row INSERTs, one commit each: row by row, every row is a
            # commit of its own (a disk flush), about 75x slower (MariaDB's driver and MySQL's)
            "rewriteBatchedStatements": "true",
        }
        if url.password:
            options["password"] = url.password
        options.update(database.jdbc_tls_options(url))  # the engine's TLS (RDS requires it)
        return options

    def stage(self, frame: DataFrame, table: str) -> None:
        """Write ``frame`` into a fresh staging table, from the executors."""
        frame.write.format("jdbc").options(**self.jdbc_options(table)).mode("overwrite").save()

    def drop(self, *tables: str) -> None:
        with self.engine.begin() as conn:
            for table in tables:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{table}`")

    def load_object(
        self,
        table_name: str,
        source_file: str,
        chunks: Any,
        finish: Callable[[], dict[str, Any]],
        replace: bool = False,
    ) -> dict[str, Any]:
        if not (isinstance(chunks, SparkValidation) and self.is_mysql):
            try:
                return super().load_object(table_name, source_file, chunks, finish, replace)
            finally:
                if isinstance(chunks, SparkValidation):
                    chunks.release()
        try:
            with (
                self.staging_tables(source_file, "rows", "bad") as (rows, bad),
                refused_as_object_error(source_file),
            ):
                return self._load_staged(
                    table_name, source_file, chunks, finish, replace, rows, bad
                )
        finally:
            chunks.release()

    def _load_staged(self, table_name, source_file, validation, finish, replace, rows, bad):
        table, log = self.table(table_name), self.table(database.INGESTION_LOG)
        quarantine = self.table(database.QUARANTINE)
        started = _now()
        loaded, rejected = validation.counts()
        if rejected and not loaded:
            reasons = "; ".join(
                f"{r} ({n} row{'s' if n > 1 else ''})" for r, n in validation.top_reasons()
            )
            raise SnapshotError(
                source_file,
                f"every one of its {rejected} rows was rejected; the most common reasons: "
                f"{reasons}. Fix the file or the schema parameters, then run again",
            )
        self.stage(validation.valid(), rows)
        self.stage(validation.rejected(), bad)
        logger.info("%s: %d rows staged, %d quarantined (JDBC)", source_file, loaded, rejected)
        columns = ", ".join(f"`{c}`" for c in validation.columns)
        with self.engine.begin() as conn:
            claim_object(conn, table, log, quarantine, source_file, replace, started)
            now = _now()
            moved = conn.exec_driver_sql(
                f"INSERT INTO `{table.name}` ({columns}, `source_file`, `ingested_at`) "
                f"SELECT {columns}, %s, %s FROM `{rows}`",
                (source_file, now),
            ).rowcount
            if moved != loaded:
                raise ObjectLoadError(
                    f"{source_file}: {moved} of {loaded} validated rows reached {table.name}"
                )
            conn.exec_driver_sql(
                "INSERT INTO `quarantine` (`source_file`, `row_number`, `reason`, `record`, "
                "`quarantined_at`) SELECT %s, `row_number`, `reason`, `record`, %s "
                f"FROM `{bad}`",
                (source_file, now),
            )
            return complete_object(conn, log, source_file, loaded, rejected, replace, finish())

    def replace_scores(self, source_file, model_version, scores, rejected) -> None:
        """One batch of ``churn_scores`` in one transaction, as the pandas store's; the
        scores are a Spark DataFrame (staged through JDBC on MySQL, streamed to the
        driver a partition at a time on SQLite)."""
        if not isinstance(scores, DataFrame):
            return super().replace_scores(source_file, model_version, scores, rejected)
        table, quarantine = self.table(database.CHURN_SCORES), self.table(database.QUARANTINE)
        columns = [c.name for c in table.columns]
        staging = (
            self.staging_tables(f"{model_version}/{source_file}", "scores")
            if self.is_mysql
            else contextlib.nullcontext([None])
        )
        with staging as (staged,):
            if staged is not None:
                self.stage(scores.select(*columns), staged)
            with self.engine.begin() as conn:
                conn.execute(
                    sa.delete(table).where(
                        table.c.model_version == model_version, table.c.source_file == source_file
                    )
                )
                if staged is not None:
                    names = ", ".join(f"`{c}`" for c in columns)
                    conn.exec_driver_sql(
                        f"INSERT INTO `{table.name}` ({names}) SELECT {names} FROM `{staged}`"
                    )
                else:
                    batch = []
                    for row in scores.select(*columns).toLocalIterator(prefetchPartitions=True):
                        batch.append(row.asDict())
                        if len(batch) >= 50_000:
                            conn.execute(table.insert(), batch)
                            batch = []
                    if batch:
                        conn.execute(table.insert(), batch)
                conn.execute(sa.delete(quarantine).where(quarantine.c.source_file == source_file))
                _insert_quarantine(conn, quarantine, source_file, rejected, _now())
