"""The serving champion: champion.json -> version -> model, loaded once per process.

``champion.json`` is re-read at most every ``refresh_seconds``; a new version is
loaded aside and swapped in with one assignment, so a request sees either the old
champion or the new one, whole. Reads go through :class:`churn_kedro.registry.ModelRegistry`
(fsspec: a folder or ``s3://``), which imports neither Kedro nor training code. Only
the serving form is ever loaded: a champion without one, or with one that cannot be
read (truncated, damaged), is answered with a 503 that names the version, the file and
the problem; a fresh process does not fall back to an older version, so every process
serves what ``champion.json`` names or nothing. A warm process keeps the model it has
when the registry cannot be read, when the new champion cannot be loaded, and when
``champion.json`` disappears; :attr:`ChampionSource.warning` (shown by ``/health``)
then says why the model served may not be the registry's champion.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from churn_kedro.inference import ServingModel
from churn_kedro.registry import CHAMPION_FILE, SERVING_FILE, ModelRegistry

logger = logging.getLogger(__name__)


class NoChampion(RuntimeError):
    """Nothing can be served: no champion yet, or the registry cannot be read."""


class Unservable(NoChampion):
    """The champion version has no serving form this code can read."""


def load_version(registry: ModelRegistry, version: str) -> dict[str, Any]:
    """{"version", "model", "card"} of ``version``, the model being its serving form
    (numpy only). Raises Unservable, naming the version and the reason, when the
    version has no serving form or it cannot be read."""
    card = registry.card(version)
    try:
        data = registry.fs.cat_file(registry.version_path(version, SERVING_FILE))
    except FileNotFoundError:
        why = (card.get("serving") or {}).get("reason", "it was registered without one")
        raise Unservable(f"version {version} has no {SERVING_FILE}: {why}") from None
    try:
        model = ServingModel.from_bytes(data)
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib, numpy and json each raise their own
        path = registry.fs.unstrip_protocol(registry.version_path(version, SERVING_FILE))
        raise Unservable(
            f"version {version}: {path} cannot be read ({type(exc).__name__}: {exc}); "
            f"promote or roll back to a servable version"
        ) from exc
    return {"version": version, "model": model, "card": card}


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
        self._warning: str | None = None
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

    @property
    def warning(self) -> str | None:
        """Why the model being served may not be the registry's champion right now
        (champion.json missing or unreadable, the new champion unservable), or None."""
        return self._warning if self._current is not None else None

    def _stale(self) -> bool:
        return self._checked_at is None or self._clock() - self._checked_at >= self.refresh_seconds

    def _refresh(self) -> None:
        try:
            doc = self.registry.champion()
            if doc is None:
                self._problem = f"no champion in {self.location}: {CHAMPION_FILE} is missing (nothing promoted yet)"
                if self._current is not None:  # deleted under us: keep the last good model
                    self._warning = (
                        f"{CHAMPION_FILE} is missing from {self.location}; serving the last "
                        f"champion read, {self._current['version']}, until one is promoted"
                    )
                    logger.error(self._warning)
            else:
                if self._current is None or self._current["version"] != doc["version"]:
                    loaded = load_version(self.registry, doc["version"])
                    previous = self._current["version"] if self._current else None
                    self._current = loaded  # the swap: one assignment
                    logger.info("serving champion %s (was %s)", loaded["version"], previous)
                self._warning = None
        except Exception as exc:  # noqa: BLE001 - any failure to read must not take the API down
            # Keep answering with the model we have; without one, say why.
            self._problem = f"cannot read the champion from {self.location}: {exc}"
            if self._current is not None:
                self._warning = f"{self._problem}; serving {self._current['version']}"
            logger.error(self._problem)
        self._checked_at = self._clock()
