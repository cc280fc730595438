"""Project datasets: the I/O that kedro-datasets does not cover."""

from churn_kedro.datasets.model_registry_dataset import ModelRegistryDataset

__all__ = ["ModelRegistryDataset"]
