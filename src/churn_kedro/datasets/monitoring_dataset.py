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
from churn_kedro.datasets.model_registry_dataset import ModelRegistryDataset
from churn_kedro.monitoring.profile import load_profile, write_latest_verdict


class ChampionMonitoringDataset(ModelRegistryDataset):
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


VERDICT_VALUES = {"ok": 0, "warn": 1, "retrain": 2}


class VerdictEventsDataset(AbstractDataset[dict[str, Any], None]):
    """Publishes a monitoring verdict on AWS (the ``aws`` environment's
    ``monitoring_events``): ``save(summary)`` puts the CloudWatch metric
    ``MonitoringVerdict`` (0 ok, 1 warn, 2 retrain; dimension ``ModelVersion``) in
    ``namespace``, and an EventBridge event (``source``, detail-type ``Monitoring
    verdict``, the summary as detail) on ``event_bus``, which a rule routes to the
    retraining job and to a notification topic (infra/README.md).

    Example catalog entry::

        monitoring_events:
          type: churn_kedro.datasets.monitoring_dataset.VerdictEventsDataset
          namespace: ChurnKedro
          event_bus: default
    """

    DETAIL_TYPE = "Monitoring verdict"

    def __init__(
        self,
        namespace: str = "ChurnKedro",
        event_bus: str = "default",
        source: str = "churn-kedro.monitoring",
        metadata: dict[str, Any] | None = None,
    ):
        self._namespace, self._event_bus, self._source = namespace, event_bus, source
        self.metadata = metadata

    def load(self) -> None:
        from kedro.io import DatasetError

        raise DatasetError("VerdictEventsDataset only publishes")

    def save(self, data: dict[str, Any]) -> None:
        import json

        import boto3

        boto3.client("cloudwatch").put_metric_data(
            Namespace=self._namespace,
            MetricData=[
                {
                    "MetricName": "MonitoringVerdict",
                    "Dimensions": [{"Name": "ModelVersion", "Value": str(data["model_version"])}],
                    "Value": float(VERDICT_VALUES[data["verdict"]]),
                    "Unit": "None",
                }
            ],
        )
        answer = boto3.client("events").put_events(
            Entries=[
                {
                    "Source": self._source,
                    "DetailType": self.DETAIL_TYPE,
                    "Detail": json.dumps(data, default=str),
                    "EventBusName": self._event_bus,
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            from kedro.io import DatasetError

            raise DatasetError(
                f"EventBridge refused the monitoring event on bus {self._event_bus}: "
                f"{answer['Entries'][0].get('ErrorMessage')}"
            )

    def _describe(self) -> dict[str, Any]:
        return {"namespace": self._namespace, "event_bus": self._event_bus, "source": self._source}
