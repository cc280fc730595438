"""The model registry (see docs/architecture.md: storage): a folder locally, an S3 prefix on AWS, one code path.

    <root>/versions/<version>/model.joblib   the fitted sklearn Pipeline
    <root>/versions/<version>/serving.npz    its numpy-only serving form (what the API loads)
    <root>/versions/<version>/card.json      metrics, params, threshold, schema, serving, ...
    <root>/champion.json                     the serving version + the champions before it
    <root>/benchmarks.csv                    one row per model per run (append-only)

Versions are immutable; promotion and rollback only rewrite ``champion.json``,
atomically (write-then-rename locally, a single PUT on S3). Only a version whose
serving form was written can be promoted: the serving image loads nothing else.
This module needs only fsspec (and joblib for the Pipeline), so the serving image
uses it without Kedro or training code; it never builds artefacts itself.
"""

from __future__ import annotations

import io
import json
import posixpath
import uuid
from datetime import UTC, datetime
from typing import Any

import fsspec

CHAMPION_FILE = "champion.json"
BENCHMARKS_FILE = "benchmarks.csv"
MODEL_FILE = "model.joblib"
SERVING_FILE = "serving.npz"
CARD_FILE = "card.json"
HISTORY_LIMIT = 50


class RegistryError(RuntimeError):
    """The registry is missing something or holds something it cannot read."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ModelRegistry:
    def __init__(self, root: str, storage_options: dict[str, Any] | None = None):
        self.fs, self.root = fsspec.core.url_to_fs(str(root), **(storage_options or {}))
        self.root = self.root.rstrip("/")
        self.url = str(root).rstrip("/")

    # ---- paths --------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def version_path(self, version: str, name: str = "") -> str:
        """The path of a version's folder, or of one of its files."""
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"invalid model version {version!r}")
        return self._path("versions", version, name) if name else self._path("versions", version)

    # ---- versions -----------------------------------------------------------------
    def versions(self) -> list[str]:
        """Complete versions (those with a card), oldest first."""
        pattern = self._path("versions", "*", CARD_FILE)
        return sorted(posixpath.basename(posixpath.dirname(p)) for p in self.fs.glob(pattern))

    def exists(self, version: str) -> bool:
        return self.fs.exists(self.version_path(version, CARD_FILE))

    def register(
        self, version: str, model: Any, card: dict[str, Any], files: dict[str, bytes] | None = None
    ) -> None:
        """Write a new immutable version: the pickled model, the artefacts built from it
        (``files``: name -> bytes, e.g. the serving form) and, last, the card, which
        marks the version complete."""
        import joblib

        if self.fs.exists(self.version_path(version)):
            raise RegistryError(
                f"version {version} already exists in {self.url}; versions are immutable"
            )
        buffer = io.BytesIO()
        joblib.dump(model, buffer, compress=3)
        self.fs.makedirs(self.version_path(version), exist_ok=True)
        self.fs.pipe_file(self.version_path(version, MODEL_FILE), buffer.getvalue())
        for name, data in (files or {}).items():
            self.fs.pipe_file(self.version_path(version, name), data)
        self.fs.pipe_file(
            self.version_path(version, CARD_FILE),
            json.dumps(card, indent=2, default=str).encode(),
        )

    def unservable_reason(self, version: str) -> str | None:
        """Why the serving image could not load ``version``, or None when it can."""
        card = self.card(version)
        serving = card.get("serving") or {}
        if serving.get("servable") is False:
            return f"it has no serving form: {serving.get('reason', 'the export declined it')}"
        if not self.fs.exists(self.version_path(version, SERVING_FILE)):
            return f"it has no {SERVING_FILE}"
        return None

    def card(self, version: str) -> dict[str, Any]:
        path = self.version_path(version, CARD_FILE)
        if not self.fs.exists(path):
            raise RegistryError(f"version {version} is not in the registry {self.url}")
        return self._read_json(path)

    def load_model(self, version: str) -> Any:
        import joblib

        path = self.version_path(version, MODEL_FILE)
        if not self.fs.exists(path):
            raise RegistryError(f"version {version} has no {MODEL_FILE} in {self.url}")
        with self.fs.open(path, "rb") as f:
            return joblib.load(f)

    # ---- champion -----------------------------------------------------------------
    def champion(self) -> dict[str, Any] | None:
        """The champion document, or None when no model has been promoted yet."""
        path = self._path(CHAMPION_FILE)
        if not self.fs.exists(path):
            return None
        doc = self._read_json(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
            raise RegistryError(f"{self.url}/{CHAMPION_FILE} is corrupted: it names no version")
        return doc

    def promote(self, version: str, reason: str) -> dict[str, Any]:
        """Make ``version`` the champion; the current one goes on the history."""
        if not self.exists(version):
            raise RegistryError(f"cannot promote {version}: it is not in the registry {self.url}")
        problem = self.unservable_reason(version)
        if problem:
            raise RegistryError(f"cannot promote {version}: {problem}")
        current = self.champion()
        history = []
        if current is not None:
            history = [_entry(current), *current.get("history", [])][:HISTORY_LIMIT]
        doc = {"version": version, "promoted_at": utc_now(), "reason": reason, "history": history}
        self._write_champion(doc)
        return doc

    def rollback(self, reason: str = "manual rollback") -> dict[str, Any]:
        """Restore the champion before the current one."""
        current = self.champion()
        if current is None:
            raise RegistryError(f"cannot roll back: {self.url} has no {CHAMPION_FILE}")
        history = current.get("history") or []
        if not history:
            raise RegistryError(f"cannot roll back: {current['version']} has no previous champion")
        previous = history[0]
        problem = self.unservable_reason(previous["version"])
        if problem:
            raise RegistryError(f"cannot roll back to {previous['version']}: {problem}")
        doc = {
            "version": previous["version"],
            "promoted_at": utc_now(),
            "reason": f"{reason} (rolled back from {current['version']})",
            "history": history[1:],
        }
        self._write_champion(doc)
        return doc

    def _write_champion(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc, indent=2).encode()
        path = self._path(CHAMPION_FILE)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        if "file" in protocols:
            # Readers never see a half-written file: write aside, then rename over it.
            tmp = self._path(f".{CHAMPION_FILE}.{uuid.uuid4().hex}.tmp")
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        else:
            self.fs.pipe_file(path, data)  # a single PUT is atomic on S3

    # ---- benchmarks ---------------------------------------------------------------
    def append_benchmarks(self, rows: list[dict[str, Any]]) -> None:
        """Append rows to benchmarks.csv (a read-modify-write on object stores)."""
        import pandas as pd

        path = self._path(BENCHMARKS_FILE)
        new = pd.DataFrame(rows)
        if self.fs.exists(path):
            with self.fs.open(path, "rb") as f:
                old = pd.read_csv(f)
            new = pd.concat([old, new], ignore_index=True)
        self.fs.pipe_file(path, new.to_csv(index=False).encode())

    def benchmarks(self):
        import pandas as pd

        path = self._path(BENCHMARKS_FILE)
        if not self.fs.exists(path):
            return pd.DataFrame()
        with self.fs.open(path, "rb") as f:
            return pd.read_csv(f)

    def _read_json(self, path: str) -> Any:
        try:
            return json.loads(self.fs.cat_file(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{self.fs.unstrip_protocol(path)} is corrupted: {exc}") from exc


def _entry(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("version", "promoted_at", "reason")}
