"""The monitoring plots: drift per feature, score distributions, realized calibration."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in Glue
import matplotlib.pyplot as plt
import numpy as np


def _drift_plot(snapshot: dict[str, Any], settings: dict[str, Any]):
    figure, ax = plt.subplots(figsize=(6, 3.8))
    features = snapshot.get("features") or []
    if features:
        names = [f["feature"] for f in features]
        colours = ["tab:red" if f["flagged"] else "tab:blue" for f in features]
        ax.barh(names, [f["psi"] for f in features], color=colours)
        ax.axvline(settings["data_drift"]["psi_retrain"], color="grey", ls="--", lw=1)
        ax.set_xlabel("PSI against the reference (red: flagged)")
        ax.set_title(f"data drift: {snapshot['source_file']}", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no data drift measured", ha="center", va="center")
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def _score_plot(champion: dict[str, Any], predictions: list[dict[str, Any]]):
    figure, ax = plt.subplots(figsize=(6, 3.8))
    reference = (champion.get("profile") or {}).get("score")
    if reference:
        counts = np.asarray(reference["psi_counts"], float)
        ax.step(range(len(counts)), counts / counts.sum(), where="mid", label="reference", lw=2)
        for batch in predictions[-4:]:
            shares = np.asarray(batch["bin_shares"])
            ax.step(range(len(shares)), shares, where="mid", label=batch["source_file"])
        ax.set_xlabel("reference score decile")
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=7)
        ax.set_title("score distribution", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no reference scores", ha="center", va="center")
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def _calibration_plot(champion: dict[str, Any], performance: dict[str, Any]):
    figure, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect")
    expected = ((champion.get("profile") or {}).get("score") or {}).get("calibration") or []
    if expected:
        ax.plot(
            [b["mean_predicted"] for b in expected],
            [b["observed"] for b in expected],
            "o-",
            label="expected (holdout at training)",
        )
    if performance.get("available"):
        table = performance["calibration"]
        x = np.array([b["mean_predicted"] for b in table])
        y = np.array([b["observed"] for b in table])
        ci = np.array([b["observed_ci"] for b in table])
        ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt="s-", capsize=3,
                    label=f"realized ({performance['source_file']})")  # fmt: skip
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.legend(fontsize=7)
    ax.set_title("calibration: realized vs expected", fontsize=9)
    figure.tight_layout()
    return figure


def plot_monitoring(
    champion: dict[str, Any],
    snapshot: dict[str, Any],
    predictions: list[dict[str, Any]],
    performance: dict[str, Any],
    settings: dict[str, Any],
) -> tuple[Any, Any, Any]:
    figures = (
        _drift_plot(snapshot, settings),
        _score_plot(champion, predictions),
        _calibration_plot(champion, performance),
    )
    plt.close("all")  # the datasets save the figures; keep no global state
    return figures
