"""The DeLong AUC interval and paired test, and the decision threshold."""

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, f1_score, log_loss, roc_auc_score

from churn_kedro.pipelines.data_science.nodes import choose_threshold
from churn_kedro.pipelines.model_promotion.metrics import (
    auc_interval,
    calibration_error,
    delong,
    holdout_metrics,
    paired_auc_test,
)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(7)
    y = rng.binomial(1, 0.25, 3000)
    strong = y * 1.2 + rng.normal(size=y.size)
    weak = y * 0.4 + rng.normal(size=y.size)
    return y, strong, weak


def test_delong_auc_equals_sklearn_with_ties(scored):
    y, strong, weak = scored
    tied = np.round(weak, 1)
    aucs, _ = delong(y, strong, tied)
    assert aucs == pytest.approx([roc_auc_score(y, strong), roc_auc_score(y, tied)], abs=1e-12)


def test_interval_matches_bootstrap_spread(scored):
    y, strong, _ = scored
    auc, low, high = auc_interval(y, strong, 0.95)
    rng = np.random.default_rng(0)
    boot = [
        roc_auc_score(y[i], strong[i])
        for i in (rng.integers(0, y.size, y.size) for _ in range(300))
    ]
    assert low < auc < high
    assert (high - low) / 2 == pytest.approx(1.96 * np.std(boot), rel=0.2)


def test_paired_test_separates_real_and_null_differences(scored):
    y, strong, weak = scored
    delta, p = paired_auc_test(y, strong, weak)
    assert delta > 0.1 and p < 1e-6
    delta, p = paired_auc_test(y, weak, strong)
    assert delta < 0 and p > 0.99
    assert paired_auc_test(y, strong, strong.copy()) == (0.0, 1.0)


def test_max_f1_threshold_is_the_best_cut(scored):
    y, strong, _ = scored
    p = 1 / (1 + np.exp(-strong))
    t = choose_threshold(y, p, {"policy": "max_f1"})
    best = f1_score(y, p >= t)
    assert all(
        best >= f1_score(y, p >= c) - 1e-12 for c in np.quantile(p, np.linspace(0.05, 0.95, 37))
    )


def test_cost_threshold_follows_the_economics(scored):
    y, strong, _ = scored
    p = 1 / (1 + np.exp(-strong))
    cheap = choose_threshold(
        y, p, {"policy": "cost", "offer_cost": 1.0, "saved_customer_value": 100.0}
    )
    dear = choose_threshold(
        y, p, {"policy": "cost", "offer_cost": 60.0, "saved_customer_value": 100.0}
    )
    assert cheap < dear  # expensive offers go only to the likeliest churners
    with pytest.raises(ValueError, match="max_f1 or cost"):
        choose_threshold(y, p, {"policy": "coin"})


def test_proper_scores_match_sklearn_and_carry_intervals(scored):
    y, strong, _ = scored
    p = 1 / (1 + np.exp(-(strong - 1.5)))
    m = holdout_metrics(y, p, 0.5, 0.95, bins=10)
    assert m["brier"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert m["log_loss"] == pytest.approx(log_loss(y, p), abs=1e-12)
    for name in ("roc_auc", "brier", "log_loss", "calibration_error"):
        low, high = m[f"{name}_ci"]
        assert low < m[name] < high, name
    assert m["mean_predicted"] == pytest.approx(p.mean())


def test_calibration_error_of_true_and_shifted_probabilities():
    rng = np.random.default_rng(5)
    p = 1 / (1 + np.exp(-(-1.4 + rng.normal(size=20000))))
    y = rng.binomial(1, p)
    assert calibration_error(y, p, 10) < 0.015  # sampling noise only
    assert calibration_error(y, np.clip(p + 0.1, 0, 1), 10) == pytest.approx(0.1, abs=0.015)
    # two bins by hand: rows 0-1 predicted 0.1 (observed 0.5), rows 2-3 predicted 0.9 (observed 1)
    assert calibration_error(
        np.array([0, 1, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9]), 2
    ) == pytest.approx((0.4 + 0.1) / 2)
