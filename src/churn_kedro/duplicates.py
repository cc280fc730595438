"""The duplicate rule of the data contract, over a whole file read in any number of chunks.

An exact repeat of an earlier row is rejected as a duplicate of that row; an id that comes
with different values is rejected on every row that carries it. ``validate_frame`` applies
it to a whole frame with a fresh :class:`DuplicateTracker`; chunked ingestion keeps one
tracker for all the chunks of a file, so both reject exactly the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _hashes(texts: list[str]) -> np.ndarray:
    """64-bit hashes of strings: Python's own str hash (SipHash, seeded per process, so
    only ever compared within one run) is ~4x faster here than pandas' hashing of text."""
    return np.fromiter(map(hash, texts), dtype="int64", count=len(texts)).view("uint64")


_CELL_SEPARATOR = pa.scalar("\x1f", pa.large_string())  # ASCII unit separator


def _row_hashes(raw: pd.DataFrame) -> np.ndarray:
    """A hash of each row's cells as read: the cells joined by the unit separator, a
    missing cell as NUL (so it differs from an empty one). Two rows could only be taken
    for each other through cells holding those control characters, or a 64-bit clash."""
    columns = [pa.array(raw[c], type=pa.large_string(), from_pandas=True) for c in raw.columns]
    joined = pc.binary_join_element_wise(
        *columns, _CELL_SEPARATOR, null_handling="replace", null_replacement="\x00"
    )
    return _hashes(joined.to_pylist())


def _lookup(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Membership of ``values`` in the sorted ``keys`` (binary search: no hash table to
    rebuild as the file grows); returns (found mask, positions in keys)."""
    order = np.argsort(values)  # searching in sorted order is cache-friendly: ~5x faster
    positions = np.empty(len(values), dtype="int64")
    positions[order] = np.searchsorted(keys, values[order])
    positions = positions.clip(max=max(len(keys) - 1, 0))
    found = keys[positions] == values if len(keys) else np.zeros(len(values), dtype=bool)
    return found, positions


class DuplicateTracker:
    """The duplicate rule over all the chunks of one file.

    It remembers a 64-bit hash of each distinct row and of each id seen so far (about
    24 bytes a row, not the rows). Rows of a conflicting id that were accepted from
    earlier chunks are handed back in ``retract`` (id -> reason) to move to quarantine.
    """

    def __init__(self, id_column: str):
        self.id_column = id_column
        self.row_keys = np.empty(0, dtype="uint64")  # sorted hashes of distinct rows
        self.row_numbers = np.empty(0, dtype="int64")  # the first row of each, aligned
        self.id_keys = np.empty(0, dtype="uint64")  # sorted hashes of ids
        self.conflicting: set[str] = set()
        self.retract: dict[str, str] = {}  # id -> reason, for the chunk just checked

    def __call__(self, raw: pd.DataFrame, ids: pd.Series, first_row_number: int) -> pd.Series:
        """Reasons for the rows of the next chunk ``raw`` (indexed 0..n-1, ``ids`` its
        stripped ids) that repeat a row or contradict another row of the same id."""
        numbers = np.arange(first_row_number, first_row_number + len(raw), dtype="int64")
        has_id = ids.notna().to_numpy()
        row_hashes = _row_hashes(raw)
        id_hashes = _hashes(ids.fillna("").tolist())

        earlier, where = _lookup(self.row_keys, row_hashes)
        repeated_here = pd.Series(row_hashes).duplicated().to_numpy()
        reasons = pd.Series(index=raw.index, dtype=object)
        if earlier.any():
            reasons[earlier] = repeat_reasons(self.row_numbers[where[earlier]])
        within = repeated_here & ~earlier
        if within.any():
            first = pd.Series(numbers).groupby(row_hashes).transform("first").to_numpy()
            reasons[within] = repeat_reasons(first[within])

        distinct = has_id & ~earlier & ~repeated_here
        seen_before = distinct & _lookup(self.id_keys, id_hashes)[0]
        positions = distinct.nonzero()[0]
        seen_here = np.zeros(len(raw), dtype=bool)
        seen_here[positions[pd.Series(id_hashes[positions]).duplicated(keep=False).to_numpy()]] = (
            True
        )
        conflict = seen_before | seen_here
        if conflict.any():
            message = conflict_reasons(self.id_column, ids[conflict])
            reasons[conflict] = message
            self.retract = {
                value: reason
                for value, reason in zip(ids[seen_before], message[seen_before[conflict]])
                if value not in self.conflicting
            }
            self.conflicting.update(ids[conflict])
        else:
            self.retract = {}

        fresh = ~earlier & ~repeated_here
        keys = np.concatenate([self.row_keys, row_hashes[fresh]])
        order = np.argsort(keys, kind="stable")
        self.row_keys, self.row_numbers = (
            keys[order],
            np.concatenate([self.row_numbers, numbers[fresh]])[order],
        )
        self.id_keys = np.sort(np.concatenate([self.id_keys, id_hashes[has_id]]))
        return reasons.dropna()


def repeat_reasons(row_numbers: np.ndarray) -> list[str]:
    """The reason of a row that repeats the row of each given number."""
    return [f"duplicate: repeats row {n}" for n in row_numbers]


def conflict_reasons(id_column: str, ids: pd.Series) -> pd.Series:
    """The reason of each row whose (stripped) id comes with different values elsewhere."""
    return f"{id_column}: '" + ids + "' appears on several rows with different values"
