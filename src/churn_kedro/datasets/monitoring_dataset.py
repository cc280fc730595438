"""Kedro access to what monitoring reads and writes (docs/architecture.md, "Monitoring"):
the champion with its reference profile and latest verdict in the registry, and the
``monitoring`` table."""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa
from kedro.io import AbstractDataset

from churn_kedro import database
from churn_kedro.datasets.ingestion_database_dataset import IngestionDatabaseDataset
from churn_kedro.monitoring.profile import load_profile, write_latest_verdict
from churn_kedro.registry import ModelRegistry


class ChampionMonitoringDataset(AbstractDataset[dict[str, Any], dict[str, Any] | None]):
    """``load()``: ``{"version", "card", "promoted_at", "profile"}`` of the champion
    (``profile`` None for a version registered before profiles existed), or None when
    nothing has been promoted. ``save(verdict)`` writes ``monitoring/latest.json`` in the
    registry, which ``churn-registry status`` and ``GET /model`` show.

    Example catalog entry::

        monitored_champion:
          type: churn_kedro.datasets.monitoring_dataset.ChampionMonitoringDataset
          path: s3://my-bucket/registry
          credentials: aws   # optional, passed to fsspec
    """

    def __init__(
        self,
        path: str,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self._path = path
        self._storage_options = {**(credentials or {}), **(fs_args or {})}
        self.metadata = metadata

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self._path, self._storage_options)

    def load(self) -> dict[str, Any] | None:
        registry = self.registry
        champion = registry.champion()
        if champion is None:
            return None
        version = champion["version"]
        return {
            "version": version,
            "promoted_at": champion.get("promoted_at"),
            "card": registry.card(version),
            "profile": load_profile(registry, version),
        }

    def save(self, data: dict[str, Any]) -> None:
        write_latest_verdict(self.registry, data)

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


class MonitoringDataset(IngestionDatabaseDataset):
    """The ``monitoring`` table. ``load()`` returns ``{"monitored": DataFrame of the
    (model_version, source_file) score batches already monitored, "labels_known":
    {source_file: when its ingestion finished}}``; ``save(rows)`` appends one run's
    rows in one transaction.

    Example catalog entry::

        monitoring_history:
          type: churn_kedro.datasets.monitoring_dataset.MonitoringDataset
          credentials: churn_db
    """

    def load(self) -> dict[str, Any]:
        engine = self.engine()
        metadata = database.create_tables(engine)
        table, log = metadata.tables[database.MONITORING], metadata.tables[database.INGESTION_LOG]
        with engine.connect() as conn:
            monitored = pd.read_sql(
                sa.select(table.c.model_version, table.c.source_file)
                .where(table.c.subject == database.MONITORING_SCORE_SUBJECT)
                .distinct(),
                conn,
            )
            known = conn.execute(sa.select(log.c.source_file, log.c.finished_at)).all()
        return {"monitored": monitored, "labels_known": {k: v for k, v in known}}

    def save(self, data: pd.DataFrame) -> None:
        engine = self.engine()
        metadata = database.create_tables(engine)
        with engine.begin() as conn:
            conn.execute(metadata.tables[database.MONITORING].insert(), data.to_dict("records"))
