"""Drift statistics against a reference profile (:mod:`churn_kedro.monitoring.profile`),
the champion's realized performance, and the verdict (docs/architecture.md, "Monitoring").

* Data drift per feature: the population stability index on the profile's coarse bins,
  a two-sample test (Kolmogorov-Smirnov for numerics, computed on the profile's fine
  grid; chi-square for categoricals) whose p-values are corrected for testing every
  feature at once (Holm or Benjamini-Hochberg), and the change in the missing rate.
* Prediction drift: the PSI of the scores and the change in the predicted churn rate.
* Realized performance: ROC-AUC (DeLong interval), Brier score (normal interval) and the
  expected calibration error (bootstrap interval) of earlier scores against labels now
  known, each compared with the model card's holdout figure and a tolerance.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .profile import bin_counts

PSI_FLOOR = 1e-4  # a bin's share is floored, so an empty bin does not make the PSI infinite


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index between two count vectors over the same bins."""
    ref = np.maximum(np.asarray(reference, float) / max(np.sum(reference), 1), PSI_FLOOR)
    cur = np.maximum(np.asarray(current, float) / max(np.sum(current), 1), PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_from_counts(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic on a common grid of bins and its asymptotic p-value (as
    scipy's ``ks_2samp(method="asymp")``). The CDFs are compared at the bin edges only,
    so the statistic never exceeds the exact one: the test errs towards not flagging."""
    n, m = int(np.sum(reference)), int(np.sum(current))
    if n == 0 or m == 0:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.cumsum(reference) / n - np.cumsum(current) / m)))
    effective = round(n * m / (n + m))
    return d, float(stats.kstwo.sf(d, max(effective, 1)))


def chi2_from_counts(reference: dict[str, int], current: dict[str, int]) -> tuple[float, float]:
    """Chi-square test of homogeneity between two categorical count tables (a value seen
    on one side only counts too)."""
    names = sorted(set(reference) | set(current))
    table = np.array([[reference.get(k, 0) for k in names], [current.get(k, 0) for k in names]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def adjust_p_values(p_values: list[float], method: str) -> list[float]:
    """Corrected p-values: ``holm`` (family-wise error), ``bh`` (false discovery rate,
    Benjamini-Hochberg) or ``none``."""
    p = np.asarray(p_values, dtype=float)
    if not len(p) or method == "none":
        return p.tolist()
    if method == "bh":
        return stats.false_discovery_control(p, method="bh").tolist()
    if method == "holm":
        order = np.argsort(p)
        scaled = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
        adjusted = np.empty_like(p)
        adjusted[order] = np.minimum(scaled, 1.0)
        return adjusted.tolist()
    raise ValueError(f"monitor.data_drift.correction {method!r}: expected holm, bh or none")


class SnapshotCounts:
    """A snapshot's counts on the profile's bins, added chunk by chunk (memory does not
    grow with the rows)."""

    def __init__(self, profile: dict[str, Any]):
        self.profile = profile
        self.rows = 0
        self.missing: Counter[str] = Counter()
        self.fine: dict[str, np.ndarray] = {}
        self.coarse: dict[str, np.ndarray] = {}
        self.sums: Counter[str] = Counter()
        self.categories: dict[str, Counter[str]] = {}
        for name, ref in profile["features"].items():
            if ref["kind"] == "numeric":
                self.fine[name] = np.zeros(len(ref["edges"]) + 1, dtype=np.int64)
                self.coarse[name] = np.zeros(len(ref["psi_edges"]) + 1, dtype=np.int64)
            else:
                self.categories[name] = Counter()

    def add(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        for name, ref in self.profile["features"].items():
            column = frame[name]
            missing = column.isna().to_numpy()
            self.missing[name] += int(missing.sum())
            present = column[~missing]
            if ref["kind"] == "numeric":
                values = present.to_numpy(dtype=float)
                self.fine[name] += bin_counts(values, ref["edges"])
                self.coarse[name] += bin_counts(values, ref["psi_edges"])
                self.sums[name] += float(values.sum())
            else:
                self.categories[name].update(present.astype(str).value_counts().to_dict())


def feature_drift(counts: SnapshotCounts, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per feature: PSI, the test, its corrected p-value, the missing-rate
    change, and whether it is flagged (corrected p below ``alpha`` with a PSI of at least
    ``min_psi``, or a missing-rate change beyond ``missing_rate_change``)."""
    records = []
    for name, ref in counts.profile["features"].items():
        present = counts.rows - counts.missing[name]
        record: dict[str, Any] = {"feature": name, "kind": ref["kind"], "rows": counts.rows}
        if ref["kind"] == "numeric":
            record["psi"] = psi(ref["psi_counts"], counts.coarse[name])
            record["test"] = "ks"
            record["statistic"], record["p_value"] = ks_from_counts(
                np.asarray(ref["counts"]), counts.fine[name]
            )
            record["reference_mean"] = ref.get("mean")
            record["mean"] = counts.sums[name] / present if present else None
        else:
            names = sorted(set(ref["counts"]) | set(counts.categories[name]))
            record["psi"] = psi(
                np.array([ref["counts"].get(k, 0) for k in names]),
                np.array([counts.categories[name].get(k, 0) for k in names]),
            )
            record["test"] = "chi2"
            record["statistic"], record["p_value"] = chi2_from_counts(
                ref["counts"], dict(counts.categories[name])
            )
            record["unseen_values"] = sorted(set(counts.categories[name]) - set(ref["counts"]))
        record["reference_missing_rate"] = ref["missing_rate"]
        record["missing_rate"] = counts.missing[name] / counts.rows if counts.rows else 0.0
        record["missing_rate_change"] = record["missing_rate"] - ref["missing_rate"]
        records.append(record)
    adjusted = adjust_p_values([r["p_value"] for r in records], settings["correction"])
    for record, p in zip(records, adjusted):
        record["p_adjusted"] = p
        reasons = []
        if p < settings["alpha"] and record["psi"] >= settings["min_psi"]:
            reasons.append(
                f"{record['test']} p={p:.2g} (corrected) < {settings['alpha']}, PSI {record['psi']:.3f}"
            )
        if abs(record["missing_rate_change"]) > settings["missing_rate_change"]:
            reasons.append(
                f"missing rate {record['reference_missing_rate']:.3f} -> {record['missing_rate']:.3f}"
            )
        record["flagged"] = bool(reasons)
        record["severe"] = bool(reasons) and record["psi"] >= settings["psi_retrain"]
        record["reasons"] = reasons
    return records


def prediction_drift(
    reference: dict[str, Any], probability: np.ndarray, settings: dict[str, Any]
) -> dict[str, Any]:
    """The PSI and the KS test of a batch's scores against the reference scores, and the
    change in the predicted churn rate (share at or above the model's threshold)."""
    probability = np.asarray(probability, dtype=float)
    rate = float(np.mean(probability >= reference["threshold"])) if len(probability) else 0.0
    current = bin_counts(probability, reference["psi_edges"])
    value = psi(reference["psi_counts"], current)
    ks, p_value = ks_from_counts(
        np.asarray(reference["counts"]), bin_counts(probability, reference["edges"])
    )
    change = rate - reference["positive_rate"]
    reasons = []
    if p_value < settings["alpha"]:
        reasons.append(f"score ks {ks:.3f} p={p_value:.2g} < {settings['alpha']}")
    if value >= settings["psi_warn"]:
        reasons.append(f"score PSI {value:.3f} >= {settings['psi_warn']}")
    if abs(change) > settings["churn_rate_change"]:
        reasons.append(
            f"predicted churn rate {reference['positive_rate']:.3f} -> {rate:.3f} "
            f"(change beyond {settings['churn_rate_change']})"
        )
    return {
        "rows": int(len(probability)),
        "psi": value,
        "ks": ks,
        "p_value": p_value,
        "predicted_churn_rate": rate,
        "reference_churn_rate": reference["positive_rate"],
        "churn_rate_change": change,
        "mean_probability": float(probability.mean()) if len(probability) else None,
        "bin_shares": (current / max(current.sum(), 1)).tolist(),
        "flagged": bool(reasons),
        "severe": value >= settings["psi_retrain"],
        "reasons": reasons,
    }


def calibration_table(
    y: np.ndarray, probability: np.ndarray, bins: int, level: float
) -> list[dict[str, Any]]:
    """Per bin of predicted probability (equal width): mean prediction, the observed
    churn rate with its Wilson interval, and the row count."""
    z = stats.norm.ppf(0.5 + level / 2)
    index = np.minimum((probability * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if not n:
            continue
        rate = float(y[mask].mean())
        centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        table.append(
            {
                "bin": b,
                "rows": n,
                "mean_predicted": float(probability[mask].mean()),
                "observed": rate,
                "observed_ci": [float(max(centre - half, 0)), float(min(centre + half, 1))],
            }
        )
    return table


def expected_calibration_error(y: np.ndarray, probability: np.ndarray, bins: int) -> float:
    index = np.minimum((probability * bins).astype(int), bins - 1)
    n = np.bincount(index, minlength=bins)
    gap = np.abs(
        np.bincount(index, weights=probability - y, minlength=bins)
    )  # |sum(p) - sum(y)| per bin
    return float(gap.sum() / max(n.sum(), 1))


def realized_performance(
    y: np.ndarray, probability: np.ndarray, card_metrics: dict[str, Any], settings: dict[str, Any]
) -> dict[str, Any]:
    """Earlier scores against the labels now known, beside the card's holdout figures.

    Degraded means: the upper end of the one-sided interval (at ``confidence_level``) of
    the realized ROC-AUC is below the card's ROC-AUC minus ``roc_auc_tolerance``, the
    interval counting the uncertainty of both figures (the card's from its holdout
    interval at ``card_ci_level``); or the lower end of the Brier score's interval is
    above the card's plus ``brier_tolerance``.
    """
    from churn_kedro.pipelines.model_promotion.metrics import delong

    y = np.asarray(y, dtype=float)
    probability = np.asarray(probability, dtype=float)
    level = settings["confidence_level"]
    z_one = stats.norm.ppf(level)
    z_two = stats.norm.ppf(0.5 + level / 2)
    (auc,), covariance = delong(y, probability)
    se = float(np.sqrt(max(covariance[0, 0], 0.0)))
    squared = (probability - y) ** 2
    brier, brier_se = float(squared.mean()), float(squared.std(ddof=1) / np.sqrt(len(y)))
    bins = settings["calibration_bins"]
    ece = expected_calibration_error(y, probability, bins)
    rng = np.random.default_rng(0)
    boot = [
        expected_calibration_error(y[i], probability[i], bins)
        for i in (rng.integers(0, len(y), len(y)) for _ in range(settings["bootstrap"]))
    ]
    card_auc, card_brier = card_metrics.get("roc_auc"), card_metrics.get("brier")
    result: dict[str, Any] = {
        "rows": int(len(y)),
        "positive_rate": float(y.mean()),
        "roc_auc": float(auc),
        "roc_auc_ci": [max(float(auc) - z_two * se, 0.0), min(float(auc) + z_two * se, 1.0)],
        "card_roc_auc": card_auc,
        "brier": brier,
        "brier_ci": [brier - z_two * brier_se, brier + z_two * brier_se],
        "card_brier": card_brier,
        "calibration_error": ece,
        "calibration_error_ci": [float(np.quantile(boot, q)) for q in (0.025, 0.975)]
        if boot
        else None,
        "calibration": calibration_table(y, probability, bins, level),
        "reasons": [],
    }
    if card_auc is not None:
        # the card's figure is an estimate on its holdout too: its interval widens the test
        card_ci = card_metrics.get("roc_auc_ci")
        card_se = 0.0
        if card_ci:
            card_se = (card_ci[1] - card_ci[0]) / (
                2 * stats.norm.ppf(0.5 + settings["card_ci_level"] / 2)
            )
        combined = float(np.hypot(se, card_se))
        bound = float(auc) + z_one * combined
        floor = card_auc - settings["roc_auc_tolerance"]
        result["roc_auc_degraded"] = bound < floor
        result["roc_auc_p_value"] = (
            float(stats.norm.cdf((auc - floor) / combined)) if combined > 0 else None
        )
        if result["roc_auc_degraded"]:
            result["reasons"].append(
                f"realized roc_auc {auc:.3f} below the card's {card_auc:.3f} minus the "
                f"tolerance {settings['roc_auc_tolerance']} (p={result['roc_auc_p_value']:.2g}; "
                f"upper {level:.0%} bound {bound:.3f} with both intervals)"
            )
    if card_brier is not None:
        bound = brier - z_one * brier_se
        result["brier_degraded"] = bound > card_brier + settings["brier_tolerance"]
        if result["brier_degraded"]:
            result["reasons"].append(
                f"realized brier {brier:.3f} (lower bound {bound:.3f}) above the card's "
                f"{card_brier:.3f} plus the tolerance {settings['brier_tolerance']}"
            )
    result["degraded"] = bool(result["reasons"])
    return result


def decide(
    features: list[dict[str, Any]] | None,
    predictions: list[dict[str, Any]],
    performance: dict[str, Any] | None,
    notes: list[str],
    settings: dict[str, Any],
) -> tuple[str, list[str]]:
    """``retrain`` when the realized performance degraded, or when at least
    ``retrain_on.severe_features`` features drifted with a PSI at or above
    ``psi_retrain`` together with a severe score drift; ``warn`` when anything is
    flagged or something could not be checked (``notes``); else ``ok``."""
    retrain, warn = [], list(notes)
    flagged = [f for f in features or [] if f["flagged"]]
    severe = [f["feature"] for f in flagged if f["severe"]]
    if flagged:
        warn.append(
            "drifted features: "
            + ", ".join(f"{f['feature']} ({'; '.join(f['reasons'])})" for f in flagged)
        )
    for batch in predictions:
        if batch["flagged"]:
            warn.append(f"{batch['source_file']}: " + "; ".join(batch["reasons"]))
    severe_scores = [b["source_file"] for b in predictions if b["severe"]]
    if performance and performance.get("degraded"):
        retrain.extend(performance["reasons"])
    if severe_scores and len(severe) >= settings["retrain_on"]["severe_features"]:
        retrain.append(
            f"severe drift of features {', '.join(severe)} and of the scores of "
            f"{', '.join(severe_scores)}"
        )
    if retrain:
        return "retrain", retrain + warn
    return ("warn", warn) if warn else ("ok", [])
