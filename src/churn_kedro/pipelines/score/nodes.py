"""Batch scoring nodes: pick the snapshot, validate it, score it with the champion
through the one inference function (the API's), write ``churn_scores``."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from churn_kedro import database
from churn_kedro.export import UnsupportedModel, export_serving_form
from churn_kedro.inference import predict
from churn_kedro.schema import Schema, SnapshotError, describe_read_error, validate_frame

logger = logging.getLogger(__name__)


def select_snapshot_to_score(
    partitions: dict[str, Callable[[], pd.DataFrame]], pattern: str, settings: dict[str, Any]
) -> tuple[pd.DataFrame, str]:
    """The snapshot named by ``score.snapshot``, else the newest file whose name matches
    ``snapshot_pattern``; returns its raw text cells and its source_file key."""
    prefix = settings["key_prefix"]
    names = {key.rsplit("/", 1)[-1]: key for key in partitions}
    wanted = settings.get("snapshot")
    if wanted:
        wanted = str(wanted).removesuffix(".csv")
        if wanted not in names:
            raise SnapshotError(
                f"{prefix}/{wanted}.csv", f"not found; files to score: {sorted(names) or 'none'}"
            )
        name = wanted
    else:
        regex = re.compile(pattern)
        dated = sorted((m.group(1), n) for n in names if (m := regex.match(n)))
        if not dated:
            raise SnapshotError(
                prefix, f"no file to score matches {pattern}; found {sorted(names) or 'none'}"
            )
        name = dated[-1][1]
    source_file = f"{prefix}/{name}.csv"
    try:
        raw = partitions[names[name]]()
    except Exception as exc:  # a file that is not a CSV at all
        raise SnapshotError(source_file, describe_read_error(exc)) from exc
    logger.info("Scoring %s (%d rows)", source_file, len(raw))
    return raw, source_file


def validate_snapshot_to_score(
    raw: pd.DataFrame, source_file: str, schema_params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Typed valid rows and rejected rows (with reasons) of a label-less snapshot."""
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
    champion: dict[str, Any] | None,
    source_file: str,
    schema_params: dict[str, Any],
) -> pd.DataFrame:
    """One row per customer: probability and label from the champion, with its version.
    The Pipeline is evaluated through its serving form, exactly as the API does."""
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
    model = champion["model"]
    try:
        model = export_serving_form(model, card)
    except UnsupportedModel as exc:
        logger.warning(
            "champion %s has no serving form (%s): scoring with its Pipeline",
            champion["version"],
            exc,
        )
    result = predict({**champion, "model": model}, valid[card["features"]])
    id_column = Schema.from_params(schema_params).id_column
    return pd.DataFrame(
        {
            "model_version": result.model_version,
            "source_file": source_file,
            "customer_id": valid[id_column].astype(str).to_numpy(),
            "churn_probability": result.probability,
            "churn": result.label,
            "scored_at": datetime.now(UTC).replace(tzinfo=None, microsecond=0),
        }
    )


def write_scores(
    open_database: Callable[[Schema], Any],
    scores: pd.DataFrame,
    rejected: pd.DataFrame,
    source_file: str,
    schema_params: dict[str, Any],
) -> dict[str, Any]:
    """Write the scores (and the rejected rows to ``quarantine``) in one transaction.
    Scoring a file again with the same model replaces its rows, never duplicates them."""
    db = open_database(Schema.from_params(schema_params))
    table, quarantine = db.table(database.CHURN_SCORES), db.table(database.QUARANTINE)
    version = scores["model_version"].iloc[0] if len(scores) else None
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with db.engine.begin() as conn:
        if version is not None:
            conn.execute(
                sa.delete(table).where(
                    table.c.model_version == version, table.c.source_file == source_file
                )
            )
            conn.execute(table.insert(), scores.to_dict("records"))
        conn.execute(sa.delete(quarantine).where(quarantine.c.source_file == source_file))
        if len(rejected):
            conn.execute(
                quarantine.insert(),
                [
                    {
                        "source_file": source_file,
                        "row_number": int(r.row_number),
                        "reason": r.reason,
                        "record": r.record,
                        "quarantined_at": now,
                    }
                    for r in rejected.itertuples(index=False)
                ],
            )
    report = {
        "source_file": source_file,
        "model_version": version,
        "rows_scored": int(len(scores)),
        "rows_rejected": int(len(rejected)),
        "predicted_churners": int(scores["churn"].sum()),
        "mean_probability": float(scores["churn_probability"].mean()) if len(scores) else None,
        "rejected_reasons": rejected["reason"].head(20).tolist(),
        "scored_at": now.isoformat() + "Z",
    }
    logger.info(
        "Scored %s with %s: %d rows, %d rejected", source_file, version, len(scores), len(rejected)
    )
    return report
