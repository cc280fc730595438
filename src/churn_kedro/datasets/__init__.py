"""Project datasets: the I/O that kedro-datasets does not cover."""

from churn_kedro.datasets.ingestion_database_dataset import (
    ChurnScoresDataset,
    IngestionDatabaseDataset,
)
from churn_kedro.datasets.model_registry_dataset import ModelRegistryDataset
from churn_kedro.datasets.snapshot_objects_dataset import SnapshotObjectsDataset
from churn_kedro.datasets.spark_datasets import (
    SparkChurnScoresDataset,
    SparkIngestionDatabaseDataset,
    SparkSnapshotObjectsDataset,
)

__all__ = [
    "ChurnScoresDataset",
    "IngestionDatabaseDataset",
    "ModelRegistryDataset",
    "SnapshotObjectsDataset",
    "SparkChurnScoresDataset",
    "SparkIngestionDatabaseDataset",
    "SparkSnapshotObjectsDataset",
]
