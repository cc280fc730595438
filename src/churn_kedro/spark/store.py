"""The ingestion store on Spark (see docs/architecture.md: engines): exactly once per
object, as :class:`churn_kedro.ingestion.store.IngestionDatabase`.

On MySQL the executors write an object's good and rejected rows through JDBC into two
staging tables named after the object; then one transaction on the driver moves them
into the target table and ``quarantine`` together with the ``ingestion_log`` row. A job
killed before that commit leaves nothing of the object in the tables (a staging table at
most, replaced by the rerun), and the rerun loads it whole. On SQLite (the local
default) the rows come to the driver a partition at a time and go through the pandas
store's own transaction.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
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


def staging_name(kind: str, source_file: str) -> str:
    """A staging table named after the object (and this process, so that two runs never
    share one), within MySQL's 64 characters."""
    stem = re.sub(r"[^0-9A-Za-z]+", "_", source_file.rsplit("/", 1)[-1].removesuffix(".csv"))
    digest = hashlib.sha256(source_file.encode()).hexdigest()[:8]
    return f"stage_{kind}_{stem[:32]}_{digest}_{os.getpid()}"


class SparkIngestionDatabase(IngestionDatabase):
    """The ingestion tables, written from Spark. ``jdbc``: the JDBC URL scheme and
    driver class (MariaDB Connector/J's by default, locally and on Glue; its TLS
    properties are MariaDB's: ``database.jdbc_tls_options``)."""

    def __init__(self, engine: sa.Engine, schema: Schema | None = None, jdbc: dict | None = None):
        super().__init__(engine, schema)
        self.jdbc = {**DEFAULT_JDBC, **(jdbc or {})}

    def jdbc_options(self, table: str) -> dict[str, str]:
        url = self.engine.url
        options = {
            "url": f"jdbc:{self.jdbc['scheme']}://{url.host}:{url.port or 3306}/{url.database}",
            "driver": self.jdbc["driver"],
            "dbtable": table,
            "user": url.username or "",
            "batchsize": "10000",
            "isolationLevel": "NONE",  # a staging table: the transaction that counts is ours
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
        rows, bad = staging_name("rows", source_file), staging_name("bad", source_file)
        try:
            with refused_as_object_error(source_file):
                return self._load_staged(
                    table_name, source_file, chunks, finish, replace, rows, bad
                )
        finally:
            chunks.release()
            self.drop(rows, bad)

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
        staged = staging_name("scores", f"{model_version}/{source_file}")
        try:
            if self.is_mysql:
                self.stage(scores.select(*columns), staged)
            with self.engine.begin() as conn:
                conn.execute(
                    sa.delete(table).where(
                        table.c.model_version == model_version, table.c.source_file == source_file
                    )
                )
                if self.is_mysql:
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
        finally:
            if self.is_mysql:
                self.drop(staged)
