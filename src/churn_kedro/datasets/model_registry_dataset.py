"""Kedro access to the model registry (see docs/architecture.md: storage)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from kedro.io import AbstractDataset

from churn_kedro.contracts import RegistryEntry
from churn_kedro.registry import ModelRegistry

logger = logging.getLogger(__name__)


class ModelRegistryDataset(AbstractDataset[RegistryEntry, dict[str, Any] | None]):
    """Loads the serving champion; saves a new version and the run's decision.

    ``load()`` returns ``{"version", "model", "card"}`` of the champion, or None when
    nothing has been promoted yet (a corrupted champion.json raises). The model is the
    fitted Pipeline, or with ``form: serving`` the version's serving form: what the API
    loads, so batch scores equal the API's.

    ``save(entry)`` takes a :class:`~churn_kedro.contracts.RegistryEntry`. It builds the
    version's serving form (``churn_kedro.export``), registers the version with it,
    appends the benchmark rows and, only when the entry says promote, moves
    champion.json to the new version. A version whose serving form was declined is
    registered but not promoted, and its card and benchmark rows say why.

    Example catalog entry::

        model_registry:
          type: churn_kedro.datasets.ModelRegistryDataset
          path: s3://my-bucket/registry
          credentials: aws   # optional, passed to fsspec
          form: pipeline     # or serving
    """

    def __init__(
        self,
        path: str,
        form: str = "pipeline",
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        if form not in ("pipeline", "serving"):
            raise ValueError(f"ModelRegistryDataset form {form!r}: expected pipeline or serving")
        self._path = path
        self._form = form
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
        if self._form == "serving":
            from churn_kedro.serving.champion import load_version

            return load_version(registry, version)
        return {
            "version": version,
            "model": registry.load_model(version),
            "card": registry.card(version),
        }

    def save(self, data: RegistryEntry) -> None:
        from churn_kedro.export import build_serving_export  # build time: sklearn, CatBoost

        logger.info("%s: building and checking its serving form", data.version)
        export = build_serving_export(data.model, data.card)
        if data.promote and not export.servable:
            reason = (
                f"not promoted: version {data.version} has no serving form the serving "
                f"image can load: {export.card_entry['reason']}"
            )
            logger.warning(reason)
            data = replace(data, promote=False, reason=reason, benchmarks=_rejected(data, reason))
        card = {
            **data.card,
            "serving": export.card_entry,
            "decision": {
                **data.card.get("decision", {}),
                "promote": data.promote,
                "reason": data.reason,
            },
        }
        registry = self.registry
        logger.info("%s: registering it in %s", data.version, self._path)
        registry.register(data.version, data.model, card, files={**data.files, **export.files})
        registry.append_benchmarks(data.benchmarks)
        if data.promote:
            registry.promote(data.version, data.reason)

    def _exists(self) -> bool:
        return self.registry.champion() is not None

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "form": self._form}


def _rejected(entry: RegistryEntry, reason: str) -> list[dict[str, Any]]:
    """The benchmark rows with the new version rejected and the champion kept."""
    rows = []
    for row in entry.benchmarks:
        if row.get("version") == entry.version:
            row = {**row, "decision": "rejected", "reason": reason}
        elif row.get("role") == "champion":
            row = {**row, "decision": "kept", "reason": reason}
        rows.append(row)
    return rows
