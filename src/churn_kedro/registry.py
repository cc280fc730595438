"""The model registry (see docs/architecture.md: storage): a folder locally, an S3 prefix on AWS, one code path.

    <root>/versions/<version>/model.joblib   the fitted sklearn Pipeline
    <root>/versions/<version>/serving.npz    its numpy-only serving form (what the API loads)
    <root>/versions/<version>/card.json      metrics, params, threshold, schema, serving, ...
    <root>/champion.json                     the serving version + the champions before it
    <root>/benchmarks/<written at>-<id>.csv  one file per run: one row per model
    <root>/benchmarks.csv                    the rows of older code (read, never written)

Versions are immutable; promotion and rollback only rewrite ``champion.json``, as a
read-modify-write that loses no concurrent update: under a lock file locally
(``.champion.json.lock``; the new file is written aside, then renamed over the old
one), as a conditional PUT on S3 (``If-Match`` the ETag that was read, or
``If-None-Match: *`` for the first champion), retried on conflict. Only a complete
version (card, model, readable serving form) can be promoted: the serving image
loads nothing else. Runs append their benchmark rows as new files, so concurrent
runs never overwrite each other. This module needs only fsspec (joblib for the
Pipeline, pandas for benchmarks, filelock for local promotion, each imported where
used), so the serving image uses it without Kedro or training code; it never builds
artefacts itself.
"""

from __future__ import annotations

import io
import json
import posixpath
import random
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import fsspec

CHAMPION_FILE = "champion.json"
BENCHMARKS_DIR = "benchmarks"
BENCHMARKS_FILE = "benchmarks.csv"  # the single file of older code: still read, never written
MODEL_FILE = "model.joblib"
SERVING_FILE = "serving.npz"
CARD_FILE = "card.json"
HISTORY_LIMIT = 50
# How long promote()/rollback() wait for the lock (a folder) or keep retrying
# conditional writes that lost to another writer (S3) before giving up.
CHAMPION_UPDATE_TIMEOUT_SECONDS = 120.0


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
        path = self.version_path(version, SERVING_FILE)
        if not self.fs.exists(path):
            return f"it has no {SERVING_FILE}"
        try:  # a truncated or damaged file fails the zip's checksums
            with zipfile.ZipFile(io.BytesIO(self.fs.cat_file(path))) as archive:
                damaged = archive.testzip()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            return f"its {SERVING_FILE} is damaged ({exc})"
        if damaged is not None:
            return f"its {SERVING_FILE} is damaged (bad checksum in {damaged})"
        return None

    def incomplete_reason(self, version: str) -> str | None:
        """Why ``version`` cannot be the champion (not registered, a file missing or
        damaged), or None when it can."""
        if not self.exists(version):
            return f"it is not in the registry {self.url}"
        if not self.fs.exists(self.version_path(version, MODEL_FILE)):
            return f"it has no {MODEL_FILE}"
        return self.unservable_reason(version)

    def card(self, version: str) -> dict[str, Any]:
        path = self.version_path(version, CARD_FILE)
        if not self.fs.exists(path):
            raise RegistryError(f"version {version} is not in the registry {self.url}")
        card = self._read_json(path)
        if not isinstance(card, dict):
            raise RegistryError(f"{self.fs.unstrip_protocol(path)} is corrupted: not a JSON object")
        return card

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
        return self._champion_doc(self.fs.cat_file(path))

    def promote(self, version: str, reason: str) -> dict[str, Any]:
        """Make ``version`` the champion; the current one goes on the history."""
        problem = self.incomplete_reason(version)
        if problem:
            raise RegistryError(f"cannot promote {version}: {problem}")

        def change(current: dict[str, Any] | None) -> dict[str, Any]:
            history = []
            if current is not None:
                history = [_entry(current), *current["history"]][:HISTORY_LIMIT]
            return {
                "version": version,
                "promoted_at": utc_now(),
                "reason": reason,
                "history": history,
            }

        return self._update_champion(change)

    def rollback(self, reason: str = "manual rollback") -> dict[str, Any]:
        """Restore the champion before the current one."""

        def change(current: dict[str, Any] | None) -> dict[str, Any]:
            if current is None:
                raise RegistryError(f"cannot roll back: {self.url} has no {CHAMPION_FILE}")
            history = current["history"]
            if not history:
                raise RegistryError(
                    f"cannot roll back: {current['version']} has no previous champion"
                )
            previous = history[0]["version"]
            problem = self.incomplete_reason(previous)
            if problem:
                raise RegistryError(f"cannot roll back to {previous}: {problem}")
            return {
                "version": previous,
                "promoted_at": utc_now(),
                "reason": f"{reason} (rolled back from {current['version']})",
                "history": history[1:],
            }

        return self._update_champion(change)

    def _update_champion(
        self, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read champion.json, compute the new document with ``change`` and write it,
        losing no concurrent update (see the module docstring)."""
        path = self._path(CHAMPION_FILE)
        if self._local:
            from filelock import FileLock, Timeout

            lock = self._path(f".{CHAMPION_FILE}.lock")
            try:
                with FileLock(lock, timeout=CHAMPION_UPDATE_TIMEOUT_SECONDS):
                    doc = change(self.champion())
                    self._replace_local(path, _json_bytes(doc))
                    return doc
            except Timeout:
                raise RegistryError(
                    f"{lock} stayed locked for {CHAMPION_UPDATE_TIMEOUT_SECONDS:.0f} s: "
                    f"another promotion or rollback is running"
                ) from None
        if not self._s3:  # other fsspec stores: a plain write, see docs/architecture.md
            doc = change(self.champion())
            self.fs.pipe_file(path, _json_bytes(doc))
            return doc
        deadline = time.monotonic() + CHAMPION_UPDATE_TIMEOUT_SECONDS
        attempt = 0
        while True:
            data, etag = self._read_with_etag(path)
            doc = change(None if data is None else self._champion_doc(data))
            condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
            try:
                self.fs.pipe_file(path, _json_bytes(doc), **condition)
                return doc
            except OSError as exc:
                if not _lost_the_race(exc):
                    raise
                if time.monotonic() > deadline:
                    raise RegistryError(
                        f"{self.fs.unstrip_protocol(path)} was changed by another writer before "
                        f"each of {attempt + 1} conditional writes in "
                        f"{CHAMPION_UPDATE_TIMEOUT_SECONDS:.0f} s; try again"
                    ) from exc
            # another writer got there first: read its document and try again
            time.sleep(random.uniform(0, 0.02 * 2 ** min(attempt, 6)))
            attempt += 1

    def _read_with_etag(self, path: str) -> tuple[bytes | None, str | None]:
        """The object's bytes and the ETag of exactly those bytes (one GET), or
        (None, None) when it does not exist."""
        from fsspec.asyn import sync

        bucket, key, _ = self.fs.split_path(path)

        async def get() -> tuple[bytes, str]:
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            try:
                return await response["Body"].read(), response["ETag"]
            finally:
                response["Body"].close()

        try:
            return sync(self.fs.loop, get)
        except FileNotFoundError:
            return None, None

    def _champion_doc(self, data: bytes) -> dict[str, Any]:
        """Parse and check champion.json; a RegistryError names the file and the fault."""
        name = self.fs.unstrip_protocol(self._path(CHAMPION_FILE))
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{name} is corrupted: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
            raise RegistryError(f"{name} is corrupted: it names no version")
        history = doc.setdefault("history", [])
        if not isinstance(history, list):
            raise RegistryError(f"{name} is corrupted: its history is not a list")
        for i, entry in enumerate(history):
            if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
                raise RegistryError(
                    f"{name} is corrupted: history entry {i} names no version: {entry!r:.80}"
                )
        return doc

    @property
    def _local(self) -> bool:
        return "file" in self._protocols

    @property
    def _s3(self) -> bool:
        return "s3" in self._protocols

    @property
    def _protocols(self) -> tuple[str, ...]:
        protocol = self.fs.protocol
        return protocol if isinstance(protocol, tuple) else (protocol,)

    def _replace_local(self, path: str, data: bytes) -> None:
        """Readers never see a half-written file: write aside, then rename over it."""
        folder, name = posixpath.split(path)
        tmp = posixpath.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, path)

    # ---- benchmarks ---------------------------------------------------------------
    def append_benchmarks(self, rows: list[dict[str, Any]]) -> None:
        """Add a run's rows as a new file under benchmarks/: a write that no
        concurrent run can overwrite (no read-modify-write)."""
        import pandas as pd

        if not rows:
            return
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self._path(BENCHMARKS_DIR, f"{stamp}-{uuid.uuid4().hex[:12]}.csv")
        data = pd.DataFrame(rows).to_csv(index=False).encode()
        if self._local:
            self.fs.makedirs(self._path(BENCHMARKS_DIR), exist_ok=True)
            self._replace_local(path, data)
        else:
            self.fs.pipe_file(path, data)

    def benchmark_files(self) -> list[str]:
        """The benchmark files, in the order they were written: the single
        benchmarks.csv of older code first, if there is one, then one per run."""
        legacy = self._path(BENCHMARKS_FILE)
        runs = sorted(self.fs.glob(self._path(BENCHMARKS_DIR, "*.csv")))
        return ([legacy] if self.fs.exists(legacy) else []) + runs

    def benchmarks(self):
        """Every run's benchmark rows as one table, oldest first."""
        import pandas as pd

        paths = self.benchmark_files()
        if not paths:
            return pd.DataFrame()
        contents = self.fs.cat(paths) if len(paths) > 1 else {paths[0]: self.fs.cat_file(paths[0])}
        frames = []
        for path in paths:
            try:
                frames.append(pd.read_csv(io.BytesIO(contents[path])))
            except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
                raise RegistryError(
                    f"{self.fs.unstrip_protocol(path)} is corrupted: {' '.join(str(exc).split())}"
                ) from exc
        return pd.concat(frames, ignore_index=True)

    def _read_json(self, path: str) -> Any:
        try:
            return json.loads(self.fs.cat_file(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(f"{self.fs.unstrip_protocol(path)} is corrupted: {exc}") from exc


def _entry(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("version", "promoted_at", "reason")}


def _json_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode()


def _lost_the_race(exc: OSError) -> bool:
    """A conditional PUT refused because the object changed since it was read (412),
    or because another conditional write to it was in flight (409)."""
    if isinstance(exc, FileExistsError):  # If-None-Match: * and the object now exists
        return True
    cause = getattr(exc.__cause__, "response", None) or {}
    code = cause.get("Error", {}).get("Code")
    return code in {"PreconditionFailed", "ConditionalRequestConflict"}
