"""Kedro access to the ingestion store (:mod:`churn_kedro.ingestion.store`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import sqlalchemy as sa
from kedro.io import AbstractDataset, DatasetError

from churn_kedro import database
from churn_kedro.contracts import ScoreBatch
from churn_kedro.ingestion.store import IngestionDatabase
from churn_kedro.schema import Schema


class IngestionDatabaseDataset(AbstractDataset[IngestionDatabase, None]):
    """The ingestion tables of the database at ``credentials["con"]`` (an SQLAlchemy
    URL); tables are created when missing. The URL never appears in descriptions.

    Example catalog entry::

        ingestion_database:
          type: churn_kedro.datasets.IngestionDatabaseDataset
          credentials: churn_db     # {con: sqlite:///data/churn.db} or from Secrets Manager
    """

    _engines: dict[str, sa.Engine] = {}  # one pool per URL and process

    def __init__(
        self, credentials: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None
    ):
        self._url = (credentials or {}).get("con")
        self.metadata = metadata

    def engine(self) -> sa.Engine:
        if not self._url:
            raise DatasetError(
                "no database configured: credentials 'churn_db.con' is empty (on the aws "
                "environment set CHURN_DB_SECRET to the Secrets Manager secret id)"
            )
        if self._url not in self._engines:
            self._engines[self._url] = database.create_engine(self._url)
        return self._engines[self._url]

    def load(self) -> Callable[[Schema], IngestionDatabase]:
        """A factory: the node knows the schema, the catalog knows the connection."""
        engine = self.engine()
        return lambda schema: IngestionDatabase(engine, schema)

    def save(self, data: Any) -> None:
        raise DatasetError("IngestionDatabaseDataset is written through the object load() returns")

    def _describe(self) -> dict[str, Any]:
        if not self._url:
            return {"database": None}
        url = sa.make_url(self._url)
        return {"database": f"{url.get_backend_name()}:{url.database}"}


class ChurnScoresDataset(IngestionDatabaseDataset):
    """The ``churn_scores`` table. ``save(batch)`` takes a
    :class:`~churn_kedro.contracts.ScoreBatch` and replaces, in one transaction, the rows
    its model gave its file and the file's quarantine rows; ``load()`` returns the
    table as a DataFrame.

    Example catalog entry::

        churn_scores:
          type: churn_kedro.datasets.ChurnScoresDataset
          credentials: churn_db
    """

    def load(self) -> pd.DataFrame:
        engine = self.engine()
        database.create_tables(engine)
        with engine.connect() as conn:
            return pd.read_sql_table(database.CHURN_SCORES, conn)

    def save(self, data: ScoreBatch) -> None:
        IngestionDatabase(self.engine()).replace_scores(
            data.source_file, data.model_version, data.scores, data.rejected
        )
