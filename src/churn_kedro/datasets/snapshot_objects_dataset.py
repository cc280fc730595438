"""The snapshot objects under a prefix (local folder or S3), as lazy handles that
read in chunks: ingestion never holds a whole file in memory."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_protocol_and_path


class _HashingReader(io.RawIOBase):
    """Passes bytes through while hashing them, so the checksum costs no second read."""

    def __init__(self, raw):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.bytes_read += n
        return n


@dataclass
class SnapshotObject:
    """One object: ``source_file`` is its key under the data root (``raw/x.csv``),
    ``uri`` where it lives; ``size`` and ``version`` (ETag or mtime) are from the listing."""

    source_file: str
    uri: str
    size: int
    version: str | None
    fs: Any = field(repr=False)
    path: str = field(repr=False)
    load_args: dict[str, Any] = field(default_factory=dict, repr=False)
    checksum: str | None = None  # sha256 of the bytes, known once read through

    def compute_checksum(self) -> str:
        digest = hashlib.sha256()
        with self.fs.open(self.path, "rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
        self.checksum = digest.hexdigest()
        return self.checksum

    def validated_chunks(self, schema, chunk_rows: int, counts: dict[str, int]):
        """The object read and validated in chunks, as the ingestion store takes it
        (:func:`churn_kedro.ingestion.objects.validated_chunks`)."""
        from churn_kedro.ingestion.objects import validated_chunks

        return validated_chunks(self, schema, chunk_rows, counts)

    def head(self, size: int = 8192) -> bytes:
        with self.fs.open(self.path, "rb") as stream:
            return stream.read(size)

    def read(self) -> pd.DataFrame:
        """The whole file's cells as text (``read_chunks`` for files that may be large)."""
        with self.fs.open(self.path, "rb") as stream:
            return pd.read_csv(stream, **{"encoding": "utf-8", **self.load_args}, dtype=str)

    def read_chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The file's cells as text, ``chunk_rows`` rows at a time; after the last
        chunk, ``checksum`` holds the sha256 of every byte of the object."""
        with self.fs.open(self.path, "rb") as raw:
            hashing = _HashingReader(raw)
            stream = io.BufferedReader(hashing, buffer_size=1 << 20)
            with pd.read_csv(
                stream, **{"encoding": "utf-8", **self.load_args}, dtype=str, chunksize=chunk_rows
            ) as reader:
                yield from reader
            while stream.read(1 << 20):  # the parser may stop before the end: hash it all
                pass
            self.checksum = hashing.sha256.hexdigest()


class SnapshotObjectsDataset(AbstractDataset[dict[str, SnapshotObject], None]):
    """Lists the snapshot files under ``path``; ``load()`` returns
    ``{source_file: SnapshotObject}`` sorted by name, read nothing yet.

    Example catalog entry::

        raw_objects:
          type: churn_kedro.datasets.SnapshotObjectsDataset
          path: s3://my-bucket/raw
          key_prefix: raw          # source_file = raw/<path under it>
          filename_suffix: .csv
          credentials: aws         # optional, passed to fsspec
    """

    def __init__(
        self,
        path: str,
        key_prefix: str,
        filename_suffix: str = ".csv",
        load_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ):
        self._protocol, self._root = get_protocol_and_path(path.rstrip("/"))
        self._path = path
        self._key_prefix = key_prefix.strip("/")
        self._suffix = filename_suffix
        self._load_args = dict(load_args or {})
        self._fs = fsspec.filesystem(self._protocol, **{**(credentials or {}), **(fs_args or {})})
        self.metadata = metadata

    def _uri(self, path: str) -> str:
        return path if self._protocol == "file" else f"{self._protocol}://{path}"

    def load(self) -> dict[str, SnapshotObject]:
        self._fs.invalidate_cache()  # a watcher lists the same prefix again and again
        if not self._fs.exists(self._root):
            return {}
        root = self._fs._strip_protocol(self._root).rstrip("/")
        objects = {}
        handle = self._handle
        for path, info in sorted(self._fs.find(root, detail=True).items()):
            if not path.endswith(self._suffix) or info.get("type") == "directory":
                continue
            relative = path[len(root) :].lstrip("/")
            version = info.get("ETag") or info.get("mtime") or info.get("LastModified")
            source_file = f"{self._key_prefix}/{relative}"
            objects[source_file] = handle(
                source_file=source_file,
                uri=self._uri(path),
                size=int(info.get("size") or 0),
                version=None if version is None else str(version).strip('"'),
                fs=self._fs,
                path=path,
                load_args=self._load_args,
            )
        return objects

    _handle = SnapshotObject  # the Spark engine's dataset hands out its own handles

    def save(self, data: Any) -> None:
        raise DatasetError("SnapshotObjectsDataset is read-only: snapshots arrive from outside")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "key_prefix": self._key_prefix, "filename_suffix": self._suffix}
