"""Nodes of the data_processing pipeline."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn_kedro.schema import (
    SPLIT_COLUMN,
    Schema,
    SnapshotError,
    describe_read_error,
    fingerprint,
    newest_snapshot,
    validate_frame,
)
from churn_kedro.spark import is_spark_frame

if TYPE_CHECKING:
    from churn_kedro.datasets.snapshot_objects_dataset import SnapshotObject

logger = logging.getLogger(__name__)


def select_latest_snapshot(
    raw_objects: dict[str, SnapshotObject], snapshot_pattern: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load the newest raw snapshot (names sort by the timestamp they carry). Its
    ``source_file`` is the object key, as in ``ingestion_log`` and the model card."""
    source_file = newest_snapshot(raw_objects, snapshot_pattern, "raw snapshots")
    obj = raw_objects[source_file]
    try:
        raw = obj.read()
    except Exception as exc:  # the parser's error
        raise SnapshotError(source_file, describe_read_error(exc)) from exc
    if is_spark_frame(raw):
        logger.info("Latest raw snapshot: %s (on Spark)", source_file)
    else:
        logger.info("Latest raw snapshot: %s (%d rows)", source_file, len(raw))
    return raw, {"source_file": source_file}


def validate_snapshot(
    raw: pd.DataFrame,
    snapshot: dict[str, Any],
    schema_params: dict[str, Any],
    params: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Keep rows that pass the contract; report the others with their reasons.

    A file-level breach (missing column, no rows) stops the run: nothing of the file is
    used. Rows that break rules go to the quarantine report even when none is left:
    ``split_train_holdout`` then stops, naming the most common reasons.

    On the Spark engine the rules run over the snapshot's partitions and the valid rows
    come to this process (training is single-node) when there are at most
    ``spark_max_rows`` of them, else a sample of that size stratified by the target;
    the report's ``rows_used`` says which.
    """
    schema = Schema.from_params(schema_params)
    source = snapshot["source_file"]
    if is_spark_frame(raw):
        from churn_kedro.spark.validation import validated_for_training

        limit = int((params or {}).get("spark_max_rows") or 1_000_000)
        result, rows_read, used = validated_for_training(raw, schema, source, limit)
        summary = {"source_file": source, "rows_read": rows_read, **result.summary, **used}
    else:
        if raw.empty:
            raise SnapshotError(source, "has no data rows")
        result = validate_frame(raw, schema, source)
        summary = {"source_file": source, "rows_read": len(raw), **result.summary}
    rows_read = summary["rows_read"]
    if len(result.rejected):
        logger.warning(
            "%s: %d of %d rows rejected, by field: %s",
            source,
            len(result.rejected),
            rows_read,
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
    validation: dict[str, Any],
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
    if rows.empty:
        reasons = "; ".join(f"{r} ({n} rows)" for r, n in validation["top_reasons"].items())
        raise SnapshotError(
            snapshot["source_file"],
            f"has no valid rows ({validation['rows_rejected']} rejected; the most common "
            f"reasons: {reasons}; every row is in the quarantine report)",
        )
    if rows[schema.target].nunique() < 2:
        raise SnapshotError(
            snapshot["source_file"], f"the valid rows hold a single {schema.target} class"
        )
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
    processed = pd.concat(
        [train.assign(**{SPLIT_COLUMN: "train"}), holdout.assign(**{SPLIT_COLUMN: "holdout"})]
    )
    logger.info(
        "Split %s: %d train / %d holdout rows (churn rate %.3f / %.3f), fingerprint %s",
        snapshot["source_file"],
        len(train),
        len(holdout),
        train[schema.target].mean(),
        holdout[schema.target].mean(),
        fingerprint(processed),
    )
    # named after the raw snapshot: processed/<same file name>
    name = snapshot["source_file"].rsplit("/", 1)[-1].removesuffix(".csv")
    return train, holdout, {name: processed}
