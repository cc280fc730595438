"""Kedro access to the model registry (see docs/architecture.md: storage)."""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset

from churn_kedro.registry import ModelRegistry


class ModelRegistryDataset(AbstractDataset[dict[str, Any], dict[str, Any] | None]):
    """Loads the serving champion; saves a new version and the run's decision.

    ``load()`` returns ``{"version", "model", "card"}`` of the champion, or None
    when nothing has been promoted yet (a corrupted champion.json raises).

    ``save(entry)`` takes ``{"version", "model", "card", "promote", "reason",
    "benchmarks"}``: it registers the version, appends the benchmark rows and,
    only when ``promote`` is true, moves champion.json to the new version.

    Example catalog entry::

        model_registry:
          type: churn_kedro.datasets.ModelRegistryDataset
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
            "model": registry.load_model(version),
            "card": registry.card(version),
        }

    def save(self, data: dict[str, Any]) -> None:
        registry = self.registry
        registry.register(data["version"], data["model"], data["card"])
        registry.append_benchmarks(data["benchmarks"])
        if data["promote"]:
            registry.promote(data["version"], data["reason"])

    def _exists(self) -> bool:
        return self.registry.champion() is not None

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}
