"""The Spark engine's datasets (conf/spark, conf/aws_spark): the same names and
contracts as the pandas datasets, so every pipeline runs unchanged. pyspark is imported
only when one of them is used."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from churn_kedro.datasets.ingestion_database_dataset import (
    ChurnScoresDataset,
    IngestionDatabaseDataset,
)
from churn_kedro.datasets.snapshot_objects_dataset import SnapshotObject, SnapshotObjectsDataset
from churn_kedro.schema import Schema, SnapshotError

logger = logging.getLogger(__name__)


@dataclass
class SparkSnapshotObject(SnapshotObject):
    """A snapshot object that Spark reads: ``read()`` gives a Spark DataFrame of its
    cells as text with the data row numbers, ``validated_chunks`` its validation."""

    def read(self):
        from churn_kedro.spark.session import session
        from churn_kedro.spark.validation import read_snapshot

        return read_snapshot(session(), self)[0]

    def validated_chunks(self, schema: Schema, chunk_rows: int, counts: dict[str, int]):
        from churn_kedro.spark.session import session
        from churn_kedro.spark.validation import SparkValidation, read_snapshot, validate

        self.compute_checksum()  # one read on the driver: the ingestion_log's sha256
        raw, rows = read_snapshot(session(), self)
        if rows == 0:
            raise SnapshotError(self.uri, "has a header but no data rows")
        counts["rows_read"] = rows
        logger.info("%s: %d data rows read; validating them on Spark", self.source_file, rows)
        return SparkValidation(validate(raw, schema, self.uri), schema, chunk_rows, rows)


class SparkSnapshotObjectsDataset(SnapshotObjectsDataset):
    """:class:`SnapshotObjectsDataset` whose objects Spark reads (the same listing, the
    same ``source_file`` keys).

    Example catalog entry::

        raw_objects:
          type: churn_kedro.datasets.SparkSnapshotObjectsDataset
          path: s3://my-bucket/raw
          key_prefix: raw
    """

    _handle = SparkSnapshotObject


class SparkIngestionDatabaseDataset(IngestionDatabaseDataset):
    """:class:`IngestionDatabaseDataset` written from Spark (JDBC staging tables on
    MySQL). ``jdbc``: ``{scheme, driver}`` of the JDBC URL (default MariaDB's driver, whose
    properties carry the TLS of ``ssl_ca``; another driver gets no TLS from them).

    Example catalog entry::

        ingestion_database:
          type: churn_kedro.datasets.SparkIngestionDatabaseDataset
          credentials: churn_db
          jdbc: {scheme: mysql, driver: com.mysql.cj.jdbc.Driver}
    """

    def __init__(
        self,
        credentials: dict[str, Any] | None = None,
        jdbc: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__(credentials=credentials, metadata=metadata)
        self._jdbc = jdbc

    def load(self) -> Callable[[Schema], Any]:
        from churn_kedro.spark.store import SparkIngestionDatabase

        engine = self.engine()
        return lambda schema: SparkIngestionDatabase(engine, schema, self._jdbc)


class SparkChurnScoresDataset(SparkIngestionDatabaseDataset, ChurnScoresDataset):
    """:class:`ChurnScoresDataset` whose batch's scores may be a Spark DataFrame."""

    load = ChurnScoresDataset.load

    def save(self, data) -> None:
        from churn_kedro.spark.store import SparkIngestionDatabase

        SparkIngestionDatabase(self.engine(), jdbc=self._jdbc).replace_scores(
            data.source_file, data.model_version, data.scores, data.rejected
        )
