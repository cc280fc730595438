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
from churn_kedro.contracts import (
    AbsentChampion,
    Challenger,
    Decision,
    HoldoutScores,
    RegistryEntry,
    ScoredChampion,
    SearchResult,
    VersionInfo,
)
from churn_kedro.schema import Schema, fingerprint

from .metrics import holdout_metrics, paired_auc_test

logger = logging.getLogger(__name__)


def holdout_split(split_params: dict[str, Any]) -> dict[str, Any]:
    """The split a model's holdout came from, as its card records it."""
    return {"salt": split_params["holdout_salt"], "fraction": split_params["holdout_fraction"]}


def _champion_scores(
    champion: dict[str, Any] | None,
    holdout: pd.DataFrame,
    schema: Schema,
    split: dict[str, Any],
) -> ScoredChampion | AbsentChampion:
    """Score the champion on the holdout, or say why it cannot (then it counts as absent)."""
    if champion is None:
        return AbsentChampion(None, "no champion yet")
    version, card = champion["version"], champion["card"]
    trained_split = card.get("data", {}).get("split")
    if trained_split != split:
        # Its training rows may be in this holdout: the comparison would favour it.
        return AbsentChampion(
            version,
            f"champion {version} was trained with another holdout split "
            f"({_describe_split(trained_split)}; now {_describe_split(split)})",
        )
    old_target = card.get("schema", {}).get("target", {})
    if old_target and (
        old_target.get("column") != schema.target
        or str(old_target.get("positive")) != schema.positive_label
    ):
        return AbsentChampion(version, f"champion {version} predicts another target ({old_target})")
    missing = [f for f in card["features"] if f not in holdout.columns]
    if missing:
        return AbsentChampion(
            version,
            f"champion {version} needs feature(s) no longer in the data: {', '.join(missing)}",
        )
    try:
        probability = champion["model"].predict_proba(holdout[card["features"]])[:, 1]
    except Exception as exc:  # any failure to score means the champion cannot serve this data
        return AbsentChampion(version, f"champion {version} cannot score the new data: {exc}")
    return ScoredChampion(version, probability, float(card["threshold"]))


def _describe_split(split: dict[str, Any] | None) -> str:
    if not split:
        return "none recorded"
    return f"salt {split['salt']!r}, fraction {split['fraction']}"


def score_holdout(
    challenger: Challenger,
    champion: dict[str, Any] | None,
    holdout: pd.DataFrame,
    schema_params: dict[str, Any],
    split_params: dict[str, Any],
) -> HoldoutScores:
    """The challenger and the serving champion, scored on the same holdout rows (the
    other families were chosen against by CV and never refitted)."""
    schema = Schema.from_params(schema_params)
    return HoldoutScores(
        target=holdout[schema.target].to_numpy(),
        challenger=challenger.model.predict_proba(holdout[schema.features])[:, 1],
        champion=_champion_scores(champion, holdout, schema, holdout_split(split_params)),
    )


def decide_promotion(
    scores: HoldoutScores, challenger: Challenger, gate: dict[str, Any]
) -> Decision:
    """The promotion gate (docs/architecture.md, "Promotion gate"); every threshold comes from parameters."""
    y, level, bins = scores.target, gate["confidence_level"], gate["calibration_bins"]
    challenger_p = scores.challenger
    metrics = holdout_metrics(y, challenger_p, challenger.threshold, level, bins)
    low, high = metrics["roc_auc_ci"]
    failures, notes = [], []
    if low < gate["floor"]:
        failures.append(
            f"challenger ROC-AUC {metrics['roc_auc']:.4f} ({level:.0%} CI {low:.4f}-{high:.4f}) "
            f"has its lower bound below the floor {gate['floor']}"
            + (": no better than chance on this data" if low < 0.5 else "")
        )
    ece, (ece_low, ece_high) = metrics["calibration_error"], metrics["calibration_error_ci"]
    if ece_low > gate["max_calibration_error"]:
        failures.append(
            f"calibration error {ece:.4f} ({level:.0%} CI {ece_low:.4f}-{ece_high:.4f}) is above "
            f"the maximum {gate['max_calibration_error']}: its probabilities are not churn rates "
            f"(mean predicted {metrics['mean_predicted']:.3f}, holdout churn rate "
            f"{metrics['positive_rate']:.3f})"
        )
    champion = scores.champion
    if isinstance(champion, AbsentChampion):
        notes.append(f"{champion.reason}: treated as absent")
        if not failures:
            notes.append(
                f"ROC-AUC {metrics['roc_auc']:.4f} (CI lower bound {low:.4f} >= floor {gate['floor']})"
            )
        champion_metrics = delta = p_value = brier_change = None
    else:
        champion_metrics = holdout_metrics(y, champion.probability, champion.threshold, level, bins)
        delta, p_value = paired_auc_test(y, challenger_p, champion.probability)
        brier_change = metrics["brier"] - champion_metrics["brier"]
        vs = f"champion {champion.version} ({champion_metrics['roc_auc']:.4f})"
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
    promote = not failures
    reason = (
        ("promoted: " + "; ".join(notes)) if promote else ("not promoted: " + "; ".join(failures))
    )
    logger.info("Decision for %s: %s", challenger.family, reason)
    return Decision(
        challenger_family=challenger.family,
        challenger=metrics,
        champion_version=champion.version,
        champion=champion_metrics,
        roc_auc_delta=delta,
        p_value=p_value,
        brier_change=brier_change,
        promote=promote,
        reason=reason,
    )


def evaluate_models(
    scores: HoldoutScores, challenger: Challenger, gate: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Holdout metrics of the challenger (at its threshold) and of the champion when it
    could be scored: the evaluation report's numbers."""
    level, bins = gate["confidence_level"], gate["calibration_bins"]
    report = {
        challenger.family: holdout_metrics(
            scores.target, scores.challenger, challenger.threshold, level, bins
        )
    }
    if isinstance(scores.champion, ScoredChampion):
        report["champion"] = holdout_metrics(
            scores.target, scores.champion.probability, scores.champion.threshold, level, bins
        )
    return report


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


def name_version(challenger: Challenger) -> VersionInfo:
    """The new version's id (time, family, a random suffix) and the code that built it."""
    created = datetime.now(UTC)
    return VersionInfo(
        version=f"{created:%Y%m%dT%H%M%SZ}-{challenger.family}-{uuid.uuid4().hex[:6]}",
        created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        code_version=_code_version(),
    )


def model_card(
    version: VersionInfo,
    challenger: Challenger,
    candidates: dict[str, SearchResult],
    decision: Decision,
    snapshot: dict[str, Any],
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    schema_params: dict[str, Any],
    split_params: dict[str, Any],
) -> dict[str, Any]:
    """The version's card: what it is, what it was trained on (and which holdout split
    it must be judged on), what its search saw and what its refit used, every family's
    search result, how it scored, the decision."""
    schema = Schema.from_params(schema_params)
    candidate = challenger.result
    return {
        "version": version.version,
        "family": challenger.family,
        "created_at": version.created_at,
        "code_version": version.code_version,
        "features": schema.features,
        "schema": schema.to_dict(),
        "params": candidate.params,
        "threshold": challenger.threshold,
        "threshold_policy": challenger.threshold_policy,
        "cv": {
            "metric": "roc_auc",
            "mean": candidate.cv_roc_auc,
            "std": candidate.cv_roc_auc_std,
            "folds": candidate.search.folds,
            "trials": candidate.search.trials,
        },
        "search": candidate.search.to_dict(),
        "refit": challenger.refit.to_dict(),
        "candidates": {family: c.summary() for family, c in candidates.items()},
        "metrics": decision.challenger,
        "data": {
            "source_file": snapshot["source_file"],
            "fingerprint": fingerprint(pd.concat([train, holdout])),
            "training_rows": int(len(train)),
            "holdout_rows": int(len(holdout)),
            "split": holdout_split(split_params),
        },
        "decision": {
            "promote": decision.promote,
            "reason": decision.reason,
            "champion_version": decision.champion_version,
        },
    }


def benchmark_rows(
    version: VersionInfo,
    candidates: dict[str, SearchResult],
    decision: Decision,
    evaluation: dict[str, dict[str, Any]],
    snapshot: dict[str, Any],
) -> list[dict[str, Any]]:
    """One benchmarks.csv row per tuned family (holdout metrics for the challenger only:
    the others were never refitted) and one for the champion when it was scored."""

    def row(model, version_id, role, cv, metrics, outcome, reason):
        metrics = metrics or {}  # a family not refitted has no holdout metrics
        return {
            "run_at": version.created_at,
            "snapshot": snapshot["source_file"],
            "model": model,
            "version": version_id,
            "role": role,
            "cv_roc_auc": cv,
            "holdout_roc_auc": metrics.get("roc_auc", np.nan),
            "holdout_log_loss": metrics.get("log_loss", np.nan),
            "holdout_brier": metrics.get("brier", np.nan),
            "holdout_calibration_error": metrics.get("calibration_error", np.nan),
            "holdout_mean_predicted": metrics.get("mean_predicted", np.nan),
            "holdout_average_precision": metrics.get("average_precision", np.nan),
            "decision": outcome,
            "reason": reason,
        }

    verdict = "promoted" if decision.promote else "rejected"
    rows = [
        row(
            family,
            version.version,
            "challenger",
            c.cv_roc_auc,
            evaluation[family],
            verdict,
            decision.reason,
        )
        if family == decision.challenger_family
        else row(
            family,
            "",
            "candidate",
            c.cv_roc_auc,
            None,
            "not selected",
            "lower CV ROC-AUC than the challenger: not refitted, not scored on the holdout",
        )
        for family, c in candidates.items()
    ]
    if "champion" in evaluation:
        rows.append(
            row(
                "champion",
                decision.champion_version,
                "champion",
                np.nan,
                evaluation["champion"],
                "retired" if decision.promote else "kept",
                decision.reason,
            )
        )
    return rows


def registry_entry(
    version: VersionInfo,
    challenger: Challenger,
    card: dict[str, Any],
    decision: Decision,
    rows: list[dict[str, Any]],
) -> RegistryEntry:
    """What saving to ``model_registry`` writes: the version, and the champion move when
    the gate passed (the dataset still refuses a version without a serving form)."""
    return RegistryEntry(
        version=version.version,
        model=challenger.model,
        card=card,
        promote=decision.promote,
        reason=decision.reason,
        benchmarks=rows,
    )
