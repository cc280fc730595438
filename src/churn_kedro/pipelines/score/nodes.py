"""Batch scoring nodes: pick the snapshot, validate it, score it with the champion's
serving form through the one inference function (the API's). The ``churn_scores``
dataset writes the batch. On the Spark engine (``--env spark``) the snapshot is a Spark
DataFrame and the same rules and the same function run over its partitions
(:mod:`churn_kedro.spark`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from churn_kedro.contracts import ScoreBatch
from churn_kedro.inference import predict
from churn_kedro.schema import (
    Schema,
    SnapshotError,
    describe_read_error,
    newest_snapshot,
    validate_frame,
)
from churn_kedro.spark import is_spark_frame

if TYPE_CHECKING:
    from churn_kedro.datasets.snapshot_objects_dataset import SnapshotObject

logger = logging.getLogger(__name__)


def select_snapshot_to_score(
    objects: dict[str, SnapshotObject], pattern: str, settings: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    """The snapshot named by ``score.snapshot``, else the newest file whose name matches
    ``snapshot_pattern``; returns its raw text cells and its source_file (object key)."""
    wanted = settings.get("snapshot")
    if wanted:
        name = str(wanted).removesuffix(".csv") + ".csv"
        matches = [key for key in objects if key.rsplit("/", 1)[-1] == name]
        if not matches:
            names = sorted(key.rsplit("/", 1)[-1] for key in objects)
            raise SnapshotError(name, f"not found; files to score: {names or 'none'}")
        source_file = matches[0]
    else:
        source_file = newest_snapshot(objects, pattern, "files to score")
    try:
        raw = objects[source_file].read()
    except Exception as exc:  # a file that is not a CSV at all
        raise SnapshotError(source_file, describe_read_error(exc)) from exc
    if is_spark_frame(raw):
        logger.info("Scoring %s on Spark", source_file)
    else:
        logger.info("Scoring %s (%d rows)", source_file, len(raw))
    return raw, source_file


def validate_snapshot_to_score(
    raw: pd.DataFrame, source_file: str, schema_params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed valid rows and rejected rows (with reasons) of a label-less snapshot."""
    if is_spark_frame(raw):
        from churn_kedro.spark.validation import validated_to_score

        return validated_to_score(raw, Schema.from_params(schema_params), source_file)
    if raw.empty and not len(raw.columns):
        raise SnapshotError(source_file, "the file is empty")
    result = validate_frame(raw, Schema.from_params(schema_params), source_file, labelled=False)
    if len(result.rejected):
        logger.warning(
            "%s: %d row(s) rejected, not scored: %s",
            source_file,
            len(result.rejected),
            result.summary["rejected_by_field"],
        )
    return result.valid, result.rejected


def score_customers(
    valid: pd.DataFrame,
    rejected: pd.DataFrame,
    champion: dict[str, Any] | None,
    source_file: str,
    schema_params: dict[str, Any],
) -> tuple[ScoreBatch, dict[str, Any]]:
    """One row per customer: probability and label from the champion's serving form
    (the API's model), with its version; and the run's report."""
    if champion is None:
        raise ValueError(
            "no champion in the model registry: run `kedro run --pipeline retrain` first"
        )
    card = champion["card"]
    missing = [f for f in card["features"] if f not in valid.columns]
    if missing:
        raise ValueError(
            f"champion {champion['version']} needs feature(s) {missing}, which the schema lacks"
        )
    id_column = Schema.from_params(schema_params).id_column
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    if is_spark_frame(valid):
        from churn_kedro.spark.scoring import score_frame

        scores, summary = score_frame(valid, champion, id_column, source_file, now)
    else:
        result = predict(champion, valid[card["features"]])
        scores = pd.DataFrame(
            {
                "model_version": result.model_version,
                "source_file": source_file,
                "customer_id": valid[id_column].astype(str).to_numpy(),
                "churn_probability": result.probability,
                "churn": result.label,
                "scored_at": now,
            }
        )
        summary = {
            "rows_scored": int(len(scores)),
            "predicted_churners": int(scores["churn"].sum()),
            "mean_probability": float(scores["churn_probability"].mean()) if len(scores) else None,
        }
    version = str(champion["version"])
    report = {
        "source_file": source_file,
        "model_version": version,
        "rows_scored": summary["rows_scored"],
        "rows_rejected": int(len(rejected)),
        "predicted_churners": summary["predicted_churners"],
        "mean_probability": summary["mean_probability"],
        "rejected_reasons": rejected["reason"].head(20).tolist(),
        "scored_at": now.isoformat() + "Z",
    }
    logger.info(
        "Scored %s with %s: %d rows, %d rejected",
        source_file,
        version,
        summary["rows_scored"],
        len(rejected),
    )
    return ScoreBatch(source_file, version, scores, rejected), report
