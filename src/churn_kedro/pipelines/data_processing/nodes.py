"""Nodes of the data_processing pipeline."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from churn_kedro.schema import (
    Schema,
    SnapshotError,
    describe_read_error,
    fingerprint,
    validate_frame,
)

logger = logging.getLogger(__name__)

SPLIT = "split"


def select_latest_snapshot(
    raw_snapshots: dict[str, Callable[[], pd.DataFrame]], snapshot_pattern: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load the newest raw snapshot: names sort by the timestamp they carry."""
    pattern = re.compile(snapshot_pattern)
    named = {
        match.group(1): name
        for name in raw_snapshots
        if (match := pattern.match(name.rsplit("/", 1)[-1])) and "/" not in name
    }
    if not named:
        raise SnapshotError(
            "raw snapshots",
            f"no file name matches {snapshot_pattern!r} among {sorted(raw_snapshots)[:5]}",
        )
    timestamp = max(named)
    name = named[timestamp]
    try:
        raw = raw_snapshots[name]()
    except Exception as exc:  # the parser's error, wrapped by the dataset
        raise SnapshotError(name, describe_read_error(exc)) from exc
    logger.info("Latest raw snapshot: %s (%d rows)", name, len(raw))
    return raw, {"source_file": name, "timestamp": timestamp}


def validate_snapshot(
    raw: pd.DataFrame, snapshot: dict[str, Any], schema_params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Keep rows that pass the contract; report the others with their reasons.

    A file-level breach (missing column, no rows) stops the run: nothing of the file is used.
    """
    schema = Schema.from_params(schema_params)
    source = snapshot["source_file"]
    result = validate_frame(raw, schema, source)
    if result.valid.empty:
        problem = "has no data rows" if raw.empty else "has no valid rows"
        raise SnapshotError(source, f"{problem} ({len(result.rejected)} rejected)")
    if result.valid[schema.target].nunique() < 2:
        raise SnapshotError(source, f"the valid rows hold a single {schema.target} class")
    summary = {"source_file": source, "rows_read": len(raw), **result.summary}
    if len(result.rejected):
        logger.warning(
            "%s: %d of %d rows rejected, by field: %s",
            source,
            len(result.rejected),
            len(raw),
            summary["rejected_by_field"],
        )
    quarantine = result.rejected.assign(source_file=source)
    return result.valid, quarantine, summary


def holdout_side(ids: pd.Series, salt: str, fraction: float) -> np.ndarray:
    """True for the ids that fall in the holdout: a salted SHA-256 of the id, read as a
    number in [0, 1), below ``fraction``. A customer is on the same side in every
    snapshot (and for every snapshot size) while the salt and the fraction stay."""
    if not 0 < fraction < 1:
        raise ValueError(f"data_processing.holdout_fraction {fraction}: expected between 0 and 1")
    unit = [
        int.from_bytes(hashlib.sha256(f"{salt}:{i}".encode()).digest()[:8], "big") / 2**64
        for i in ids.astype(str)
    ]
    return np.asarray(unit) < fraction


def split_train_holdout(
    rows: pd.DataFrame,
    snapshot: dict[str, Any],
    schema_params: dict[str, Any],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame]]:
    """Customer-stable train/holdout split (`holdout_side`); also the processed snapshot
    (both splits, a `split` column, named after the raw snapshot) that the
    ingest_processed job loads.

    Stratified as far as a stable split allows: the hash does not depend on the label,
    so each class goes to the holdout at ``holdout_fraction`` in expectation (an exact
    per-class quota would move customers between snapshots). The shares are logged."""
    schema = Schema.from_params(schema_params)
    in_holdout = holdout_side(
        rows[schema.id_column], params["holdout_salt"], params["holdout_fraction"]
    )
    train = rows[~in_holdout].reset_index(drop=True)
    holdout = rows[in_holdout].reset_index(drop=True)
    if holdout[schema.target].nunique() < 2 or train[schema.target].nunique() < 2:
        raise SnapshotError(
            snapshot["source_file"],
            f"{len(rows)} rows are too few for a holdout of {params['holdout_fraction']}: "
            "a split holds a single class",
        )
    processed = pd.concat([train.assign(**{SPLIT: "train"}), holdout.assign(**{SPLIT: "holdout"})])
    logger.info(
        "Split %s: %d train / %d holdout rows (churn rate %.3f / %.3f), fingerprint %s",
        snapshot["source_file"],
        len(train),
        len(holdout),
        train[schema.target].mean(),
        holdout[schema.target].mean(),
        fingerprint(processed),
    )
    return train, holdout, {snapshot["source_file"]: processed}
