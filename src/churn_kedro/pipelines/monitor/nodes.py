"""Nodes of the monitor pipeline (docs/architecture.md, "Monitoring"), and the node of
model_promotion that gives a new version its reference profile."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn_kedro.contracts import HoldoutScores, RegistryEntry
from churn_kedro.monitoring.drift import (
    SnapshotCounts,
    calibration_table,
    decide,
    expected_calibration_error,
    feature_drift,
    prediction_drift,
    realized_performance,
)
from churn_kedro.monitoring.profile import PROFILE_FILE, build_profile, profile_bytes
from churn_kedro.schema import Schema, SnapshotError, describe_read_error, validate_frame

if TYPE_CHECKING:
    from churn_kedro.datasets.snapshot_objects_dataset import SnapshotObject

logger = logging.getLogger(__name__)

VERDICT_CODES = {"ok": 0, "warn": 1, "retrain": 2}


class RetrainRequired(SystemExit):
    """The monitor's verdict is ``retrain``: ``kedro run --pipeline monitor`` exits with
    ``monitor.exit_code_on_retrain`` once every output is saved. A SystemExit, so the
    runner lets it through as an exit code, not as a failed node."""


# ---- model_promotion: the reference profile ----------------------------------------------


def attach_reference_profile(
    entry: RegistryEntry,
    train: pd.DataFrame,
    holdout_scores: HoldoutScores,
    schema_params: dict[str, Any],
    settings: dict[str, Any],
) -> RegistryEntry:
    """The entry with its ``profile.json``: the training split's feature distributions,
    and the distribution and calibration of the challenger's scores on the holdout.
    Scores of the training rows would be in-sample (more extreme than any new data's
    for a flexible model), and out-of-fold scores come from other, smaller fits whose
    spread differs: the holdout is where the registered model meets unseen customers."""
    schema = Schema.from_params(schema_params)
    scores = np.asarray(holdout_scores.challenger, dtype=float)
    y = np.asarray(holdout_scores.target, dtype=float)
    bins = settings["performance"]["calibration_bins"]
    profile = build_profile(
        {name: train[name].to_numpy(dtype=float) for name in schema.numeric_features},
        {name: train[name].to_numpy(dtype=object) for name in schema.categorical_features},
        scores,
        entry.card["threshold"],
        fine_bins=settings["profile"]["fine_bins"],
        psi_bins=settings["profile"]["psi_bins"],
        version=entry.version,
        source_file=entry.card.get("data", {}).get("source_file"),
        created_at=entry.card.get("created_at"),
        training_rows=int(len(train)),
        scores_from="holdout",
    )
    profile["score"]["calibration_error"] = expected_calibration_error(y, scores, bins)
    profile["score"]["calibration"] = calibration_table(
        y, scores, bins, settings["performance"]["confidence_level"]
    )
    return replace(entry, files={**entry.files, PROFILE_FILE: profile_bytes(profile)})


# ---- monitor ------------------------------------------------------------------------------


def _timestamp(source_file: str, pattern: str) -> str | None:
    match = re.match(pattern, source_file.rsplit("/", 1)[-1].removesuffix(".csv"))
    return match.group(1) if match else None


def _name(source_file: str) -> str:
    return source_file.rsplit("/", 1)[-1]


def _same_name(source_files: pd.Series, source_file: str) -> pd.Series:
    """Which keys name a file of the same name as ``source_file`` (under any prefix)."""
    return source_files.str.endswith("/" + _name(source_file))


def _newest(objects: dict[str, SnapshotObject], pattern: str) -> tuple[str, str] | None:
    dated = [
        (stamp, key)
        for key in objects
        if "/" not in key.partition("/")[2] and (stamp := _timestamp(key, pattern))
    ]
    return max(dated) if dated else None


def _require_champion(champion: dict[str, Any] | None) -> dict[str, Any]:
    if champion is None:
        raise ValueError(
            "no champion in the model registry: nothing to monitor; run `kedro run --pipeline retrain` first"
        )
    return champion


def monitor_snapshot(
    raw_objects: dict[str, SnapshotObject],
    objects_to_score: dict[str, SnapshotObject],
    champion: dict[str, Any] | None,
    scores: pd.DataFrame,
    pattern: str,
    schema_params: dict[str, Any],
    settings: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The newest snapshot, labelled (raw) or not (to score; a labelled one wins a tie),
    read in chunks against the champion's profile: its data drift, and the labels of
    the customers the champion scored in a file of the same name (for the realized
    performance). A file that breaks the contract stops the run, naming the file."""
    champion = _require_champion(champion)
    schema = Schema.from_params(schema_params)
    newest = [
        (stamp, labelled, key, objects)
        for labelled, objects in ((True, raw_objects), (False, objects_to_score))
        if (found := _newest(objects, pattern))
        for stamp, key in [found]
    ]
    empty = pd.DataFrame({"customer_id": pd.Series(dtype=str), "label": pd.Series(dtype=int)})
    if not newest:
        return {"source_file": None, "labelled": False, "features": None}, empty
    _, labelled, source_file, objects = max(newest, key=lambda t: (t[0], t[1]))
    profile = champion["profile"]
    counts = SnapshotCounts(profile) if profile else None
    batch = scores[
        (scores["model_version"] == champion["version"])
        & _same_name(scores["source_file"], source_file)
    ]
    scored_ids = pd.Index(batch["customer_id"].astype(str).to_numpy(dtype=object)).unique()
    labels, rows_read, rows_valid = [], 0, 0
    try:
        for chunk in objects[source_file].read_chunks(settings["chunk_rows"]):
            result = validate_frame(
                chunk, schema, source_file, labelled, rows_read + 1, duplicates=False
            )
            rows_read += len(chunk)
            rows_valid += len(result.valid)
            if counts is not None:
                counts.add(result.valid)
            if labelled and len(scored_ids):
                ids = result.valid[schema.id_column].astype(str)
                keep = scored_ids.get_indexer(ids.to_numpy(dtype=object)) >= 0
                labels.append(
                    pd.DataFrame(
                        {
                            "customer_id": ids[keep].to_numpy(),
                            "label": result.valid[schema.target].to_numpy()[keep].astype(int),
                        }
                    )
                )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SnapshotError(source_file, describe_read_error(exc)) from exc
    if rows_read == 0:
        raise SnapshotError(source_file, "the file has no data rows")
    if rows_valid == 0:
        raise SnapshotError(source_file, "no row passes the data contract")
    logger.info(
        "Monitoring %s (%s, %d valid of %d rows) against %s",
        source_file,
        "labelled" if labelled else "unlabelled",
        rows_valid,
        rows_read,
        champion["version"],
    )
    drift = {
        "source_file": source_file,
        "labelled": labelled,
        "rows_read": rows_read,
        "rows_valid": rows_valid,
        "features": feature_drift(counts, settings["data_drift"]) if counts else None,
    }
    labels = pd.concat(labels, ignore_index=True) if labels else empty
    return drift, labels.drop_duplicates("customer_id", keep=False)


def monitor_predictions(
    champion: dict[str, Any] | None,
    scores: pd.DataFrame,
    history: dict[str, Any],
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """Prediction drift of every batch the champion scored that no run has monitored."""
    champion = _require_champion(champion)
    if not champion["profile"]:
        return []
    mine = scores[scores["model_version"] == champion["version"]]
    done = set(
        history["monitored"]
        .loc[history["monitored"]["model_version"] == champion["version"], "source_file"]
        .tolist()
    )
    batches = []
    for source_file, batch in mine.groupby("source_file", sort=True):
        if source_file in done:
            continue
        result = prediction_drift(
            champion["profile"]["score"],
            batch["churn_probability"].to_numpy(),
            settings["prediction_drift"],
        )
        batches.append({"source_file": source_file, **result})
    return batches


def monitor_performance(
    champion: dict[str, Any] | None,
    scores: pd.DataFrame,
    snapshot: dict[str, Any],
    labels: pd.DataFrame,
    history: dict[str, Any],
    pattern: str,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The champion's realized performance on a labelled snapshot: its scores of the same
    customers in a file of the same name, made before the labels were known (before the
    labelled file's ingestion finished, or before this run when it is not ingested yet),
    and never on the snapshot it was trained on or an older one."""
    champion = _require_champion(champion)
    source_file = snapshot["source_file"]
    if not source_file or not snapshot["labelled"]:
        return {"available": False, "note": "the newest snapshot has no labels yet"}
    trained_on = champion["card"].get("data", {}).get("source_file") or ""
    stamp, trained_stamp = _timestamp(source_file, pattern), _timestamp(trained_on, pattern)
    if trained_stamp and stamp and stamp <= trained_stamp:
        return {
            "available": False,
            "note": f"the labels of {source_file} were known when {champion['version']} was "
            f"trained on {trained_on}: no realized performance from training-time data",
        }
    known = history["labels_known"].get(source_file) or datetime.now(UTC).replace(tzinfo=None)
    batch = scores[
        (scores["model_version"] == champion["version"])
        & _same_name(scores["source_file"], source_file)
    ]
    early = batch[pd.to_datetime(batch["scored_at"]) < pd.Timestamp(known)]
    joined = early.assign(customer_id=early["customer_id"].astype(str)).merge(
        labels, on="customer_id"
    )
    about = {
        "source_file": source_file,
        "labels_known_at": str(known),
        "scored_rows": int(len(batch)),
        "scored_after_labels_known": int(len(batch) - len(early)),
        "batches": sorted(early["source_file"].unique().tolist()),
    }
    minimum = settings["performance"]["min_rows"]
    if len(joined) < minimum or joined["label"].nunique() < 2:
        return {
            "available": False,
            **about,
            "note": f"{len(joined)} customer(s) of {source_file} were scored by "
            f"{champion['version']} before their label was known (at least {minimum} of "
            "both classes needed)",
        }
    result = realized_performance(
        joined["label"].to_numpy(),
        joined["churn_probability"].to_numpy(),
        champion["card"].get("metrics", {}),
        settings["performance"],
    )
    profile = champion.get("profile") or {}
    result["card_calibration_error"] = profile.get("score", {}).get("calibration_error")
    return {"available": True, **about, **result}


def _row(run: dict[str, Any], source_file: str, subject: str, statistic: str, **values) -> dict:
    return {
        **run,
        "source_file": source_file,
        "subject": subject,
        "statistic": statistic,
        **{
            k: values.get(k)
            for k in ("value", "reference", "low", "high", "p_value", "threshold", "detail")
        },
        "flagged": bool(values.get("flagged", False)),
    }


def decide_verdict(
    champion: dict[str, Any] | None,
    snapshot: dict[str, Any],
    predictions: list[dict[str, Any]],
    performance: dict[str, Any],
    settings: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """The run's verdict (``ok``, ``warn``, ``retrain``) and its reasons, logged as one
    line ``verdict: ...``; the ``monitoring`` rows, the JSON report and the registry's
    latest verdict."""
    champion = _require_champion(champion)
    notes = []
    if not champion["profile"]:
        notes.append(
            f"champion {champion['version']} has no reference profile (registered before "
            "profiles existed): data and prediction drift cannot be measured; retrain to get one"
        )
    if snapshot["source_file"] is None:
        notes.append("no snapshot to monitor")
    verdict, reasons = decide(
        snapshot["features"], predictions, performance, notes, settings["verdict"]
    )
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    run = {
        "run_id": f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
        "run_at": now,
        "model_version": champion["version"],
        "verdict": verdict,
    }
    data, prediction = settings["data_drift"], settings["prediction_drift"]
    rows = []
    for f in snapshot["features"] or []:
        src, name = snapshot["source_file"], f["feature"]
        detail = "; ".join(f["reasons"]) or None
        rows += [
            _row(run, src, name, "psi", value=f["psi"], threshold=data["psi_retrain"],
                 flagged=f["severe"], detail=detail),
            _row(run, src, name, f["test"], value=f["statistic"], p_value=f["p_adjusted"],
                 threshold=data["alpha"], flagged=f["flagged"], detail=detail),
            _row(run, src, name, "missing_rate", value=f["missing_rate"],
                 reference=f["reference_missing_rate"], threshold=data["missing_rate_change"],
                 flagged=abs(f["missing_rate_change"]) > data["missing_rate_change"]),
        ]  # fmt: skip
    for b in predictions:
        src, subject, detail = b["source_file"], "score", "; ".join(b["reasons"]) or None
        rows += [
            _row(run, src, subject, "psi", value=b["psi"], threshold=prediction["psi_warn"],
                 flagged=b["psi"] >= prediction["psi_warn"], detail=detail),
            _row(run, src, subject, "ks", value=b["ks"], p_value=b["p_value"],
                 threshold=prediction["alpha"], flagged=b["p_value"] < prediction["alpha"]),
            _row(run, src, subject, "predicted_churn_rate", value=b["predicted_churn_rate"],
                 reference=b["reference_churn_rate"], p_value=b["churn_rate_p_value"],
                 threshold=prediction["churn_rate_change"],
                 flagged=abs(b["churn_rate_change"]) > prediction["churn_rate_change"]
                 or b["churn_rate_p_value"] < prediction["alpha"]),
        ]  # fmt: skip
    if performance.get("available"):
        src, p = performance["source_file"], performance
        rows += [
            _row(run, src, "performance", "roc_auc", value=p["roc_auc"], reference=p["card_roc_auc"],
                 low=p["roc_auc_ci"][0], high=p["roc_auc_ci"][1], p_value=p.get("roc_auc_p_value"),
                 flagged=p.get("roc_auc_degraded", False)),
            _row(run, src, "performance", "brier", value=p["brier"], reference=p["card_brier"],
                 low=p["brier_ci"][0], high=p["brier_ci"][1], flagged=p.get("brier_degraded", False)),
            _row(run, src, "performance", "calibration_error", value=p["calibration_error"],
                 reference=p.get("card_calibration_error"),
                 low=(p["calibration_error_ci"] or [None])[0],
                 high=(p["calibration_error_ci"] or [None, None])[1]),
        ]  # fmt: skip
    rows.append(
        _row(
            run,
            snapshot["source_file"] or "",
            "verdict",
            "verdict",
            value=VERDICT_CODES[verdict],
            flagged=verdict != "ok",
            detail="; ".join(reasons) or None,
        )
    )
    line = f"verdict: {verdict}" + (f": {'; '.join(reasons)}" if reasons else "")
    (logger.warning if verdict != "ok" else logger.info)(line)
    summary = {
        "verdict": verdict,
        "reasons": reasons,
        "at": now.isoformat() + "Z",
        "run_id": run["run_id"],
        "model_version": champion["version"],
        "source_file": snapshot["source_file"],
    }
    report = {
        **summary,
        "exit_code": settings["exit_code_on_retrain"] if verdict == "retrain" else 0,
        "data_drift": snapshot,
        "prediction_drift": predictions,
        "performance": performance,
        "thresholds": {k: settings[k] for k in ("data_drift", "prediction_drift", "performance")},
    }
    return pd.DataFrame(rows), _jsonable(report), summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def report_monitoring(
    champion: dict[str, Any] | None,
    snapshot: dict[str, Any],
    predictions: list[dict[str, Any]],
    performance: dict[str, Any],
    settings: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any], dict[str, Any], Any, Any, Any]:
    """The verdict with its table rows, report, registry summary and event (published on
    AWS, see the aws catalog), and the plots: one node, so all are saved before
    :func:`exit_on_retrain` runs."""
    from .plots import plot_monitoring

    rows, report, summary = decide_verdict(champion, snapshot, predictions, performance, settings)
    return (
        rows,
        report,
        summary,
        summary,
        *plot_monitoring(champion, snapshot, predictions, performance, settings),
    )


def exit_on_retrain(report: dict[str, Any]) -> None:
    """After every output is saved: a ``retrain`` verdict ends the run with its exit code."""
    if report["verdict"] == "retrain":
        raise RetrainRequired(report["exit_code"])
