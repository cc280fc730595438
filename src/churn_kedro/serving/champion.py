"""The serving champion: champion.json -> version -> model, loaded once per process.

``champion.json`` is re-read at most every ``refresh_seconds``; a new version is
loaded aside and swapped in with one assignment, so a request sees either the old
champion or the new one, whole. Reads go through :class:`churn_kedro.registry.ModelRegistry`
(fsspec: a folder or ``s3://``), which imports neither Kedro nor training code.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from churn_kedro.inference import SERVING_FILE, ServingModel
from churn_kedro.registry import CHAMPION_FILE, ModelRegistry

logger = logging.getLogger(__name__)


class NoChampion(RuntimeError):
    """Nothing can be served: no champion yet, or the registry cannot be read."""


def load_version(registry: ModelRegistry, version: str) -> dict[str, Any]:
    """{"version", "model", "card"}: the serving form when the version has one (numpy
    only), else the pickled Pipeline (imports scikit-learn: a slow cold start)."""
    card = registry.card(version)
    path = registry.version_path(version, SERVING_FILE)
    try:
        return {
            "version": version,
            "model": ServingModel.from_bytes(registry.fs.cat_file(path)),
            "card": card,
        }
    except FileNotFoundError:
        problem = f"it has no {SERVING_FILE}"
    except ValueError as exc:  # written by an older version of this code
        problem = str(exc)
    logger.warning("version %s: %s; serving its pickled Pipeline", version, problem)
    return {"version": version, "model": registry.load_model(version), "card": card}


class ChampionSource:
    def __init__(
        self,
        location: str,
        refresh_seconds: float = 60.0,
        storage_options: dict[str, Any] | None = None,
        clock=time.monotonic,
    ):
        self.location = location
        self.refresh_seconds = float(refresh_seconds)
        self._storage_options = storage_options
        self._registry: ModelRegistry | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._current: dict[str, Any] | None = None
        self._problem = "the champion has not been read yet"
        self._checked_at: float | None = None

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = ModelRegistry(self.location, self._storage_options)
        return self._registry

    def get(self) -> dict[str, Any]:
        """The current champion {"version", "model", "card"}; raises NoChampion."""
        if self._stale():
            with self._lock:
                if self._stale():  # another thread may have refreshed while we waited
                    self._refresh()
        current = self._current
        if current is None:
            raise NoChampion(self._problem)
        return current

    def _stale(self) -> bool:
        return self._checked_at is None or self._clock() - self._checked_at >= self.refresh_seconds

    def _refresh(self) -> None:
        try:
            doc = self.registry.champion()
            if doc is None:
                self._current = None
                self._problem = f"no champion in {self.location}: {CHAMPION_FILE} is missing (nothing promoted yet)"
            elif self._current is None or self._current["version"] != doc["version"]:
                loaded = load_version(self.registry, doc["version"])
                previous = self._current["version"] if self._current else None
                self._current = loaded  # the swap: one assignment
                logger.info("serving champion %s (was %s)", loaded["version"], previous)
        except Exception as exc:  # noqa: BLE001 - any failure to read must not take the API down
            # Keep answering with the model we have; without one, say why.
            self._problem = f"cannot read the champion from {self.location}: {exc}"
            logger.error(self._problem)
        self._checked_at = self._clock()
