"""Holdout metrics: ROC-AUC with the DeLong test for (paired) ROC-AUCs, and the proper
scores (log loss, Brier score) and the expected calibration error, each with an interval.

DeLong et al. (1988), with the fast midrank algorithm of Sun & Xu (2014): the AUCs of
several models scored on the same rows and their covariance, from which come the
confidence interval of one AUC and the paired test of a difference.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.metrics import average_precision_score, f1_score


def delong(y: np.ndarray, *probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of each model and their DeLong covariance matrix."""
    y = np.asarray(y).astype(bool)
    scores = np.vstack(probabilities)
    positives, negatives = scores[:, y], scores[:, ~y]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        raise ValueError("the holdout needs at least two rows of each class")
    rank_pos = rankdata(positives, axis=1)
    rank_neg = rankdata(negatives, axis=1)
    rank_all = rankdata(np.hstack([positives, negatives]), axis=1)
    aucs = (rank_all[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v01 = (rank_all[:, :m] - rank_pos) / n
    v10 = 1 - (rank_all[:, m:] - rank_neg) / m
    covariance = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    return aucs, covariance


def auc_interval(
    y: np.ndarray, probability: np.ndarray, level: float
) -> tuple[float, float, float]:
    """ROC-AUC with its DeLong confidence interval at ``level``."""
    (auc,), covariance = delong(y, probability)
    half = norm.ppf(0.5 + level / 2) * np.sqrt(max(covariance[0, 0], 0.0))
    return float(auc), float(max(auc - half, 0.0)), float(min(auc + half, 1.0))


def paired_auc_test(
    y: np.ndarray, challenger: np.ndarray, champion: np.ndarray
) -> tuple[float, float]:
    """ROC-AUC difference (challenger - champion) and the one-sided p-value that it is > 0."""
    aucs, covariance = delong(y, challenger, champion)
    delta = float(aucs[0] - aucs[1])
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    if variance <= 1e-15:  # the same ranking: no evidence either way
        return delta, 1.0 if delta <= 0 else 0.0
    return delta, float(norm.sf(delta / np.sqrt(variance)))


def calibration_error(y: np.ndarray, probability: np.ndarray, bins: int) -> float:
    """Expected calibration error over ``bins`` equal-count bins of the predicted
    probability: the row-weighted mean of |observed churn rate - mean predicted|."""
    y, probability = np.asarray(y, dtype=float), np.asarray(probability, dtype=float)
    order = np.argsort(probability, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, len(order))) if len(g)]
    return float(
        sum(len(g) * abs(y[g].mean() - probability[g].mean()) for g in groups) / len(order)
    )


def calibration_interval(
    y: np.ndarray, probability: np.ndarray, bins: int, level: float, resamples: int = 200
) -> tuple[float, float, float]:
    """Calibration error with a basic (reverse-percentile) bootstrap interval, seeded so
    that the same rows give the same interval.

    Sampling noise alone makes the calibration error of perfectly calibrated
    probabilities positive (about 0.9 / sqrt(rows) with 10 bins), and a resample adds
    that noise again; the basic interval reflects the resamples around the estimate,
    which removes most of that upward bias (the percentile interval would keep it)."""
    y, probability = np.asarray(y), np.asarray(probability)
    rng = np.random.default_rng(0)
    draws = [
        calibration_error(y[rows], probability[rows], bins)
        for rows in (rng.integers(0, len(y), len(y)) for _ in range(resamples))
    ]
    ece = calibration_error(y, probability, bins)
    low, high = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return ece, float(max(2 * ece - high, 0.0)), float(2 * ece - low)


def _mean_interval(losses: np.ndarray, level: float) -> tuple[float, float, float]:
    """The mean of per-row losses with its normal-approximation interval."""
    mean = float(np.mean(losses))
    half = norm.ppf(0.5 + level / 2) * float(np.std(losses, ddof=1)) / np.sqrt(len(losses))
    return mean, float(mean - half), float(mean + half)


def holdout_metrics(
    y: np.ndarray, probability: np.ndarray, threshold: float, level: float, bins: int = 10
) -> dict:
    """ROC-AUC, log loss, Brier score and calibration error, each with its ``level``
    interval, and the threshold-free and thresholded summaries of one model."""
    y = np.asarray(y)
    auc, low, high = auc_interval(y, probability, level)
    clipped = np.clip(probability, 1e-15, 1 - 1e-15)
    brier, brier_low, brier_high = _mean_interval((probability - y) ** 2, level)
    loss, loss_low, loss_high = _mean_interval(
        -(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)), level
    )
    ece, ece_low, ece_high = calibration_interval(y, probability, bins, level)
    return {
        "roc_auc": auc,
        "roc_auc_ci": [low, high],
        "log_loss": loss,
        "log_loss_ci": [loss_low, loss_high],
        "brier": brier,
        "brier_ci": [brier_low, brier_high],
        "calibration_error": ece,
        "calibration_error_ci": [ece_low, ece_high],
        "calibration_bins": int(bins),
        "mean_predicted": float(np.mean(probability)),
        "positive_rate": float(np.mean(y)),
        "average_precision": float(average_precision_score(y, probability)),
        "f1_at_threshold": float(f1_score(y, probability >= threshold, zero_division=0)),
        "rows": int(len(y)),
    }
