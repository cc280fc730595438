"""The evaluation report: ROC, precision-recall, calibration and cumulative gains/lift
plots of the challenger (and the champion, when it could score) on the holdout."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in Glue
import matplotlib.pyplot as plt
import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from churn_kedro.contracts import Decision, HoldoutScores, ScoredChampion, SearchResult

from .metrics import calibration_error


def _curves(scores: HoldoutScores, decision: Decision) -> dict[str, np.ndarray]:
    family = decision.challenger_family
    curves = {f"challenger ({family})": scores.challenger}
    if isinstance(scores.champion, ScoredChampion):
        curves[f"champion ({scores.champion.version})"] = scores.champion.probability
    return curves


def _ece(y: np.ndarray, p: np.ndarray, params: dict[str, Any]) -> float:
    return calibration_error(y, p, params["calibration_bins"])


def _gains(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-p, kind="stable")
    share = np.arange(1, len(y) + 1) / len(y)
    return share, np.cumsum(y[order]) / max(y.sum(), 1)


def plot_evaluation(
    scores: HoldoutScores,
    decision: Decision,
    evaluation: dict[str, dict[str, Any]],
    candidates: dict[str, SearchResult],
    params: dict[str, Any],
) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
    """The four figures, and evaluation_metrics.json: the decision, the holdout metrics
    of the challenger and of the champion when it could be scored, and every family's
    search result (CV ROC-AUC, parameters, what the search saw)."""
    y = scores.target
    curves = _curves(scores, decision)
    figures = {name: plt.subplots(figsize=(5.5, 4.5)) for name in ("roc", "pr", "calibration")}
    gains_figure, (gains_ax, lift_ax) = plt.subplots(1, 2, figsize=(10, 4.2))

    for label, p in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        figures["roc"][1].plot(fpr, tpr, label=label)
        precision, recall, _ = precision_recall_curve(y, p)
        figures["pr"][1].plot(recall, precision, label=label)
        observed, predicted = calibration_curve(
            y, p, n_bins=params["calibration_bins"], strategy="quantile"
        )
        figures["calibration"][1].plot(
            predicted, observed, marker="o", label=f"{label}, ECE {_ece(y, p, params):.3f}"
        )
        share, gain = _gains(y, p)
        gains_ax.plot(share, gain, label=label)
        lift_ax.plot(share, gain / share, label=label)

    ax = figures["roc"][1]
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the holdout")
    ax = figures["pr"][1]
    ax.axhline(y.mean(), linestyle=":", color="grey")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on the holdout")
    ax = figures["calibration"][1]
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", title="Calibration")
    gains_ax.plot([0, 1], [0, 1], ":", color="grey")
    gains_ax.set(
        xlabel="share of customers contacted (by score)",
        ylabel="share of churners reached",
        title="Cumulative gains",
    )
    lift_ax.axhline(1, linestyle=":", color="grey")
    lift_ax.set(
        xlabel="share of customers contacted (by score)",
        ylabel="lift over random",
        title="Lift",
        xlim=(0.01, 1),
    )
    for figure, axes in [*figures.values(), (gains_figure, gains_ax), (gains_figure, lift_ax)]:
        axes.legend(fontsize="small")
        figure.tight_layout()

    report = {
        "decision": decision.to_dict(),
        "models": evaluation,
        "candidates": {family: c.summary() for family, c in candidates.items()},
    }
    return figures["roc"][0], figures["pr"][0], figures["calibration"][0], gains_figure, report
