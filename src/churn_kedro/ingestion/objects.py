"""Reading one snapshot object for ingestion: the change check, the binary sniff, and the
chunked validation that feeds the store (:mod:`churn_kedro.ingestion.store`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from churn_kedro.duplicates import DuplicateTracker
from churn_kedro.ingestion.store import Chunk
from churn_kedro.schema import (
    ROW_NUMBER,
    Schema,
    SnapshotError,
    describe_read_error,
    validate_frame,
)

if TYPE_CHECKING:
    from churn_kedro.datasets.snapshot_objects_dataset import SnapshotObject


def validated_chunks(
    obj: SnapshotObject, schema: Schema, chunk_rows: int, counts: dict[str, int]
) -> Iterator[Chunk]:
    """Read ``obj`` in chunks and validate each; file-level problems raise SnapshotError
    naming the file (the caller's transaction then writes nothing of it)."""
    reject_binary(obj)
    tracker = DuplicateTracker(schema.id_column)
    chunks = obj.read_chunks(chunk_rows)
    while True:
        try:
            raw = next(chunks)
        except StopIteration:
            break
        except SnapshotError:
            raise
        except Exception as exc:  # the parser's own error: not a CSV, not UTF-8, a broken line
            row = f" (after data row {counts['rows_read']})" if counts["rows_read"] else ""
            raise SnapshotError(obj.uri, describe_read_error(exc) + row) from exc
        first = counts["rows_read"] + 1
        counts["rows_read"] += len(raw)
        result = validate_frame(
            raw, schema, obj.uri, labelled=True, first_row_number=first, duplicates=tracker
        )
        rows = np.arange(first, first + len(raw), dtype="int64")
        valid = result.valid.assign(
            **{ROW_NUMBER: rows[~np.isin(rows, result.rejected[ROW_NUMBER])]}
        )
        yield Chunk(valid=valid, rejected=result.rejected, retract=tracker.retract)
    if counts["rows_read"] == 0:
        raise SnapshotError(obj.uri, "has a header but no data rows")


def reject_binary(obj: SnapshotObject) -> None:
    """A binary file (an image, a zip, a parquet file) may tokenise as some odd CSV:
    say what it is instead of reporting the parser's confusion."""
    head = obj.head()
    try:
        head.decode("utf-8")
        text = True
    except UnicodeDecodeError as exc:
        text = exc.start >= len(head) - 3  # a multi-byte character cut by the block's end
    if b"\x00" in head or not text:
        raise SnapshotError(obj.uri, "a binary file, not a UTF-8 text CSV")
