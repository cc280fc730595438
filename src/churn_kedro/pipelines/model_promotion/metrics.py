"""Holdout metrics and the DeLong test for (paired) ROC-AUCs.

DeLong et al. (1988), with the fast midrank algorithm of Sun & Xu (2014): the AUCs of
several models scored on the same rows and their covariance, from which come the
confidence interval of one AUC and the paired test of a difference.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata
from sklearn.metrics import average_precision_score, brier_score_loss, f1_score, log_loss


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


def holdout_metrics(y: np.ndarray, probability: np.ndarray, threshold: float, level: float) -> dict:
    auc, low, high = auc_interval(y, probability, level)
    clipped = np.clip(probability, 1e-15, 1 - 1e-15)
    return {
        "roc_auc": auc,
        "roc_auc_ci": [low, high],
        "brier": float(brier_score_loss(y, probability)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "average_precision": float(average_precision_score(y, probability)),
        "f1_at_threshold": float(f1_score(y, probability >= threshold, zero_division=0)),
        "rows": int(len(y)),
        "positive_rate": float(np.mean(y)),
    }
