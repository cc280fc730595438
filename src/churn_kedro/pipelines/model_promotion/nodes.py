"""Nodes of the model_promotion pipeline."""

from __future__ import annotations

import logging
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import churn_kedro
from churn_kedro.contracts import RegistryEntry
from churn_kedro.schema import Schema, fingerprint

from .metrics import holdout_metrics, paired_auc_test

logger = logging.getLogger(__name__)


def _champion_scores(
    champion: dict[str, Any] | None, holdout: pd.DataFrame, schema: Schema
) -> dict:
    """Score the champion on the holdout, or say why it cannot (then it counts as absent)."""
    if champion is None:
        return {"version": None, "reason": "no champion yet"}
    version, card = champion["version"], champion["card"]
    old_target = card.get("schema", {}).get("target", {})
    if old_target and (
        old_target.get("column") != schema.target
        or str(old_target.get("positive")) != schema.positive_label
    ):
        return {
            "version": version,
            "reason": f"champion {version} predicts another target ({old_target})",
        }
    missing = [f for f in card["features"] if f not in holdout.columns]
    if missing:
        return {
            "version": version,
            "reason": f"champion {version} needs feature(s) no longer in the data: {', '.join(missing)}",
        }
    try:
        probability = champion["model"].predict_proba(holdout[card["features"]])[:, 1]
    except Exception as exc:  # any failure to score means the champion cannot serve this data
        return {
            "version": version,
            "reason": f"champion {version} cannot score the new data: {exc}",
        }
    return {"version": version, "probability": probability, "threshold": card["threshold"]}


def score_holdout(
    candidates: dict[str, dict[str, Any]],
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    holdout: pd.DataFrame,
    schema_params: dict[str, Any],
) -> dict[str, Any]:
    """Every tuned family and the serving champion, scored on the same holdout rows."""
    schema = Schema.from_params(schema_params)
    X = holdout[schema.features]
    return {
        "y": holdout[schema.target].to_numpy(),
        "challenger": challenger["family"],
        "candidates": {f: c["model"].predict_proba(X)[:, 1] for f, c in candidates.items()},
        "champion": _champion_scores(champion, holdout, schema),
    }


def decide_promotion(
    scores: dict[str, Any], challenger: dict[str, Any], gate: dict[str, Any]
) -> dict[str, Any]:
    """The promotion gate (docs/architecture.md, "Promotion gate"); every threshold comes from parameters."""
    y, level = scores["y"], gate["confidence_level"]
    challenger_p = scores["candidates"][challenger["family"]]
    metrics = holdout_metrics(y, challenger_p, challenger["threshold"], level)
    low, high = metrics["roc_auc_ci"]
    failures, notes = [], []
    if low < gate["floor"]:
        failures.append(
            f"challenger ROC-AUC {metrics['roc_auc']:.4f} ({level:.0%} CI {low:.4f}-{high:.4f}) "
            f"has its lower bound below the floor {gate['floor']}: no better than chance on this data"
            if low < 0.5
            else f"challenger ROC-AUC {metrics['roc_auc']:.4f} ({level:.0%} CI {low:.4f}-{high:.4f}) "
            f"has its lower bound below the floor {gate['floor']}"
        )
    champion = scores["champion"]
    decision: dict[str, Any] = {
        "challenger_family": challenger["family"],
        "challenger": metrics,
        "champion_version": champion["version"],
        "champion": None,
    }
    if "probability" in champion:
        champion_metrics = holdout_metrics(y, champion["probability"], champion["threshold"], level)
        delta, p_value = paired_auc_test(y, challenger_p, champion["probability"])
        brier_change = metrics["brier"] - champion_metrics["brier"]
        decision.update(
            champion=champion_metrics,
            roc_auc_delta=delta,
            p_value=p_value,
            brier_change=brier_change,
        )
        vs = f"champion {champion['version']} ({champion_metrics['roc_auc']:.4f})"
        if delta < gate["min_delta"]:
            failures.append(
                f"ROC-AUC {delta:+.4f} over {vs} is less than the minimum {gate['min_delta']}"
            )
        if p_value >= gate["significance_level"]:
            failures.append(
                f"not significant: paired DeLong p={p_value:.3f} >= {gate['significance_level']}"
            )
        if brier_change > gate["brier_tolerance"]:
            failures.append(
                f"Brier score {metrics['brier']:.4f} is worse than the champion's "
                f"{champion_metrics['brier']:.4f} beyond the tolerance {gate['brier_tolerance']}"
            )
        if not failures:
            notes.append(f"ROC-AUC {delta:+.4f} over {vs}, p={p_value:.3g}")
    else:
        notes.append(f"{champion['reason']}: treated as absent")
        if not failures:
            notes.append(
                f"ROC-AUC {metrics['roc_auc']:.4f} (CI lower bound {low:.4f} >= floor {gate['floor']})"
            )
    promote = not failures
    decision["promote"] = promote
    decision["reason"] = (
        ("promoted: " + "; ".join(notes)) if promote else ("not promoted: " + "; ".join(failures))
    )
    logger.info("Decision for %s: %s", challenger["family"], decision["reason"])
    return decision


def _code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(churn_kedro.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{churn_kedro.__version__}+{sha}" if sha else churn_kedro.__version__


def build_registry_entry(
    challenger: dict[str, Any],
    candidates: dict[str, dict[str, Any]],
    decision: dict[str, Any],
    scores: dict[str, Any],
    snapshot: dict[str, Any],
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    schema_params: dict[str, Any],
    gate: dict[str, Any],
) -> RegistryEntry:
    """The new immutable version (model + card), the decision and the run's benchmark rows."""
    schema = Schema.from_params(schema_params)
    created = datetime.now(UTC)
    version = f"{created:%Y%m%dT%H%M%SZ}-{challenger['family']}-{uuid.uuid4().hex[:6]}"
    card = {
        "version": version,
        "family": challenger["family"],
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "code_version": _code_version(),
        "features": schema.features,
        "schema": schema.to_dict(),
        "params": challenger["params"],
        "threshold": challenger["threshold"],
        "threshold_policy": challenger["threshold_policy"],
        "cv": {
            "metric": "roc_auc",
            "mean": challenger["cv_roc_auc"],
            "std": challenger["cv_roc_auc_std"],
            "folds": challenger["cv_folds"],
            "trials": challenger["n_trials"],
        },
        "metrics": decision["challenger"],
        "data": {
            "source_file": snapshot["source_file"],
            "fingerprint": fingerprint(pd.concat([train, holdout])),
            "training_rows": int(len(train)),
            "holdout_rows": int(len(holdout)),
        },
        "decision": {k: decision[k] for k in ("promote", "reason", "champion_version")},
    }
    run_at = card["created_at"]
    rows = []
    for family, candidate in candidates.items():
        selected = family == challenger["family"]
        p = scores["candidates"][family]
        m = holdout_metrics(
            scores["y"], p, challenger["threshold"] if selected else 0.5, gate["confidence_level"]
        )
        rows.append(
            {
                "run_at": run_at,
                "snapshot": snapshot["source_file"],
                "model": family,
                "version": version if selected else "",
                "role": "challenger" if selected else "candidate",
                "cv_roc_auc": candidate["cv_roc_auc"],
                "holdout_roc_auc": m["roc_auc"],
                "holdout_brier": m["brier"],
                "holdout_average_precision": m["average_precision"],
                "decision": ("promoted" if decision["promote"] else "rejected")
                if selected
                else "not selected",
                "reason": decision["reason"]
                if selected
                else "lower CV ROC-AUC than the challenger",
            }
        )
    if decision["champion"] is not None:
        rows.append(
            {
                "run_at": run_at,
                "snapshot": snapshot["source_file"],
                "model": "champion",
                "version": decision["champion_version"],
                "role": "champion",
                "cv_roc_auc": np.nan,
                "holdout_roc_auc": decision["champion"]["roc_auc"],
                "holdout_brier": decision["champion"]["brier"],
                "holdout_average_precision": decision["champion"]["average_precision"],
                "decision": "retired" if decision["promote"] else "kept",
                "reason": decision["reason"],
            }
        )
    return RegistryEntry(
        version=version,
        model=challenger["model"],
        card=card,
        promote=decision["promote"],
        reason=decision["reason"],
        benchmarks=rows,
    )
