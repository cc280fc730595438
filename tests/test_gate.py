"""The promotion gate and the choice of the challenger, called directly on small arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from churn_kedro.contracts import (
    AbsentChampion,
    Challenger,
    ChallengerChoice,
    DisabledFamily,
    HoldoutScores,
    RefitSummary,
    ScoredChampion,
    SearchResult,
    SearchSummary,
    VersionInfo,
)
from churn_kedro.pipelines.data_science.nodes import (
    TUNERS,
    choose_threshold,
    refit_challenger,
    select_challenger,
    tune_model_family,
)
from churn_kedro.pipelines.model_promotion.nodes import benchmark_rows, decide_promotion

GATE = {
    "confidence_level": 0.95,
    "floor": 0.6,
    "max_calibration_error": 0.05,
    "min_delta": 0.012,
    "significance_level": 0.10,
    "brier_tolerance": 0.005,
    "calibration_bins": 10,
}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def holdout():
    """Labels drawn from known probabilities: a strong and a weak calibrated model."""
    rng = np.random.default_rng(3)
    signal = rng.normal(size=4000)
    noise = rng.normal(size=4000)
    strong = _sigmoid(-1.6 + 1.2 * signal)
    y = rng.binomial(1, strong)
    weak_logit = -1.6 + 1.2 * (0.5 * signal + np.sqrt(0.75) * noise) * 0.6
    weak = _sigmoid(weak_logit)
    return y, strong, weak


def _challenger(family="catboost", threshold=0.3):
    search = SearchSummary(10, 10, False, 2, 1, 1, 0.1, None, False)
    result = SearchResult(family, {}, 0.7, 0.01, search, np.zeros(2), np.array([0, 1]))
    return Challenger(result, threshold, "max_f1", None, RefitSummary(10, 0.1, {}))


def _scores(y, challenger_p, champion):
    return HoldoutScores(target=y, challenger=challenger_p, champion=champion)


def test_absent_champion_promotes_a_challenger_above_the_floor(holdout):
    y, strong, _ = holdout
    decision = decide_promotion(
        _scores(y, strong, AbsentChampion(None, "no champion yet")), _challenger(), GATE
    )
    assert decision.promote
    assert decision.reason.startswith("promoted: no champion yet: treated as absent; ROC-AUC")
    assert decision.champion is None and decision.roc_auc_delta is None


def test_floor_rejects_noise_and_says_chance(holdout):
    y, _, _ = holdout
    noise = np.random.default_rng(0).uniform(size=y.size)
    decision = decide_promotion(
        _scores(y, noise, AbsentChampion(None, "no champion yet")), _challenger(), GATE
    )
    assert not decision.promote
    assert "below the floor 0.6: no better than chance" in decision.reason


def test_floor_without_chance_when_the_bound_is_above_one_half(holdout):
    y, _, weak = holdout
    decision = decide_promotion(
        _scores(y, weak, AbsentChampion(None, "no champion yet")),
        _challenger(),
        {**GATE, "floor": 0.9},
    )
    assert not decision.promote
    assert "below the floor 0.9" in decision.reason and "chance" not in decision.reason


def test_a_clear_gain_over_the_champion_is_promoted(holdout):
    y, strong, weak = holdout
    decision = decide_promotion(
        _scores(y, strong, ScoredChampion("v1", weak, 0.3)), _challenger(), GATE
    )
    assert decision.promote, decision.reason
    assert decision.roc_auc_delta > 0.05 and decision.p_value < 1e-6
    assert "over champion v1" in decision.reason


def test_the_same_model_fails_the_minimum_delta_and_significance(holdout):
    y, strong, _ = holdout
    decision = decide_promotion(
        _scores(y, strong, ScoredChampion("v1", strong.copy(), 0.3)), _challenger(), GATE
    )
    assert not decision.promote
    assert "+0.0000 over champion v1" in decision.reason
    assert "less than the minimum 0.012" in decision.reason
    assert "not significant: paired DeLong p=1.000" in decision.reason


def test_significance_alone(holdout):
    y, strong, _ = holdout
    decision = decide_promotion(
        _scores(y, strong, ScoredChampion("v1", strong.copy(), 0.3)),
        _challenger(),
        {**GATE, "min_delta": -1.0},
    )
    assert not decision.promote
    assert decision.reason == "not promoted: not significant: paired DeLong p=1.000 >= 0.1"


def test_the_default_margin_refuses_a_significant_gain_below_it(holdout):
    """The margin, not the DeLong test, stops a model that is only as good as the champion
    up to training noise: the test sees the holdout's noise only."""
    import yaml

    conf = Path(__file__).resolve().parents[1] / "conf/base/parameters_model_promotion.yml"
    gate = yaml.safe_load(conf.read_text())["model_promotion"]
    y, strong, _ = holdout
    logit = np.log(strong / (1 - strong))
    near = _sigmoid(logit + 0.2 * np.random.default_rng(11).normal(size=y.size))
    decision = decide_promotion(
        _scores(y, strong, ScoredChampion("v1", near, 0.3)), _challenger(), gate
    )
    assert 0.005 < decision.roc_auc_delta < gate["min_delta"] and decision.p_value < 0.01
    assert not decision.promote
    assert decision.reason.startswith("not promoted: ROC-AUC +0.0") and decision.reason.endswith(
        f"is less than the minimum {gate['min_delta']}"
    )


def test_brier_guardrail_rejects_a_better_ranking_with_worse_probabilities(holdout):
    y, strong, weak = holdout
    inflated = 0.5 + strong / 2  # the same ranking as strong, far too high
    decision = decide_promotion(
        _scores(y, inflated, ScoredChampion("v1", weak, 0.3)),
        _challenger(),
        {**GATE, "max_calibration_error": 1.0},  # this test alone
    )
    assert not decision.promote
    assert decision.reason.count(";") == 0
    assert decision.roc_auc_delta > 0.05 and decision.p_value < 1e-6
    assert "Brier score" in decision.reason and "beyond the tolerance 0.005" in decision.reason
    assert decision.brier_change > 0.005


def test_calibration_rejects_probabilities_that_are_not_churn_rates(holdout):
    y, strong, _ = holdout
    inflated = 0.5 + strong / 2
    decision = decide_promotion(
        _scores(y, inflated, AbsentChampion(None, "no champion yet")), _challenger(), GATE
    )
    assert not decision.promote
    assert decision.challenger["calibration_error_ci"][0] > 0.05
    assert "is above the maximum 0.05: its probabilities are not churn rates" in decision.reason
    assert f"holdout churn rate {y.mean():.3f}" in decision.reason
    # the same ranking, calibrated: promoted
    assert decide_promotion(
        _scores(y, strong, AbsentChampion(None, "no champion yet")), _challenger(), GATE
    ).promote


def _candidate(family, cv, oof, target):
    search = SearchSummary(len(target), len(target), False, 2, 1, 1, 0.1, None, False)
    return SearchResult(family, {"C": 1}, cv, 0.01, search, oof, target)


def test_select_challenger_takes_the_best_cv_and_its_threshold():
    target = np.array([0, 0, 1, 1])
    oof = np.array([0.1, 0.4, 0.35, 0.8])
    settings = {"threshold": {"policy": "max_f1"}}
    choice, candidates = select_challenger(
        settings,
        _candidate("logistic_regression", 0.70, np.array([0.9, 0.1, 0.2, 0.3]), target),
        DisabledFamily("random_forest"),
        _candidate("catboost", 0.75, oof, target),
    )
    assert choice.family == "catboost" and choice.result is candidates["catboost"]
    assert choice.threshold == 0.35 and choice.threshold_policy == "max_f1"
    assert set(candidates) == {"logistic_regression", "catboost"}


def test_select_challenger_with_every_family_disabled():
    with pytest.raises(ValueError, match="every model family is disabled"):
        select_challenger({"threshold": {"policy": "max_f1"}}, DisabledFamily("catboost"))


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"policy": "max_f1"}, 0.35),  # 2 of 2 churners for 3 offers: F1 0.8
        ({"policy": "cost", "offer_cost": 50.0, "saved_customer_value": 400.0}, 0.35),
        ({"policy": "cost", "offer_cost": 500.0, "saved_customer_value": 400.0}, 0.8),
    ],
)
def test_choose_threshold_on_four_rows(policy, expected):
    y = np.array([0, 0, 1, 1])
    assert choose_threshold(y, np.array([0.1, 0.4, 0.35, 0.8]), policy) == expected


# ---- the search returns results; only the chosen family is refitted --------------------


@pytest.fixture(scope="module")
def science():
    """The project's parameters with small budgets, and a clean generated train split."""
    import yaml

    from churn_kedro.generate import Process, generate_chunk

    conf = Path(__file__).resolve().parents[1] / "conf" / "base"
    schema = yaml.safe_load((conf / "parameters.yml").read_text())["schema"]
    settings = yaml.safe_load((conf / "parameters_data_science.yml").read_text())["data_science"]
    settings["search"]["max_rows"] = 900  # the search sees a sample of the 1,500 rows
    for family in settings["families"].values():
        family["n_trials"] = 2
    settings["families"]["random_forest"]["search_space"]["n_estimators"]["high"] = 100
    settings["families"]["catboost"]["search_space"]["iterations"]["high"] = 150
    settings["families"]["hist_gradient_boosting"]["search_space"]["max_iter"]["high"] = 150
    train, _ = generate_chunk(Process("insurance"), np.random.default_rng(7), 1, 1500, False)
    return schema, settings, train


def test_tune_returns_the_search_result_without_fitting_the_whole_split(science):
    schema, settings, train = science
    result = tune_model_family(
        train, schema, settings, settings["families"]["logistic_regression"], "logistic_regression"
    )
    assert isinstance(result, SearchResult) and not hasattr(result, "model")
    assert result.search.rows == len(result.oof_target) == 900 < result.search.train_rows == 1500
    assert result.search.sampled and result.search.trials == 2 and not result.search.time_cap_hit
    assert 0.5 < result.cv_roc_auc < 1 and set(result.params) == {"C"}


def test_only_the_family_chosen_by_cv_is_refitted_on_every_train_row(science):
    schema, settings, train = science
    tuned = [
        tune(train, schema, settings, settings["families"][family])
        for family, tune in TUNERS.items()
    ]
    choice, candidates = select_challenger(settings, *tuned)
    assert choice.family == max(candidates.values(), key=lambda c: c.cv_roc_auc).family
    # the threshold still comes from the search's out-of-fold probabilities
    assert choice.threshold == choose_threshold(
        choice.result.oof_target, choice.result.oof_probability, settings["threshold"]
    )
    challenger = refit_challenger(train, schema, settings, choice)
    assert challenger.family == choice.family and challenger.threshold == choice.threshold
    # the search saw 900 of the 1,500 rows: the family's sampled_refit goes on top
    expected = {
        **choice.result.params,
        **(settings["families"][choice.family].get("sampled_refit") or {}),
    }
    assert challenger.refit.rows == len(train) == 1500 and challenger.refit.params == expected
    fitted = challenger.model[-1].get_params()
    for name, value in expected.items():
        # the forest's rows per tree above the rows given means all of them
        clamped = name == "max_samples" and value >= len(train)
        assert fitted[name] == (None if clamped else value)
    features = [*schema["numeric_features"], *schema["categorical_features"]]
    assert challenger.model.predict_proba(train[features]).shape == (1500, 2)

    # every family still has its benchmark row; only the challenger has holdout metrics
    version = VersionInfo("v2", "2026-12-02T00:00:00Z", "test")
    decision = decide_promotion(
        HoldoutScores(
            target=train["churn"].to_numpy(),
            challenger=challenger.model.predict_proba(train[features])[:, 1],
            champion=AbsentChampion(None, "no champion yet"),
        ),
        challenger,
        GATE,
    )
    evaluation = {challenger.family: decision.challenger}
    rows = benchmark_rows(version, candidates, decision, evaluation, {"source_file": "raw/x.csv"})
    enabled = [f for f, spec in settings["families"].items() if spec.get("enabled", True)]
    assert sorted(r["model"] for r in rows) == sorted(candidates) == sorted(enabled)
    for row in rows:
        chosen = row["model"] == challenger.family
        assert row["role"] == ("challenger" if chosen else "candidate")
        assert row["cv_roc_auc"] == candidates[row["model"]].cv_roc_auc
        assert (row["holdout_roc_auc"] == row["holdout_roc_auc"]) is chosen  # NaN unless refitted
        if not chosen:
            assert "not refitted" in row["reason"]


def test_boosting_refitted_after_a_sampled_search_chooses_its_iterations(science):
    schema, settings, train = science
    family = "hist_gradient_boosting"
    sampled_refit = settings["families"][family]["sampled_refit"]
    assert sampled_refit["early_stopping"] and sampled_refit["max_iter"] > 400
    sampled = tune_model_family(train, schema, settings, settings["families"][family], family)
    assert sampled.search.sampled
    challenger = refit_challenger(train, schema, settings, ChallengerChoice(sampled, 0.5, "max_f1"))
    estimator = challenger.model[-1]
    assert challenger.refit.params == {**sampled.params, **sampled_refit}
    assert estimator.early_stopping is True and estimator.max_iter == sampled_refit["max_iter"]
    assert 0 < estimator.n_iter_ < sampled_refit["max_iter"]  # stopped by the validation loss
    again = refit_challenger(train, schema, settings, ChallengerChoice(sampled, 0.5, "max_f1"))
    features = [*schema["numeric_features"], *schema["categorical_features"]]
    np.testing.assert_array_equal(
        again.model.predict_proba(train[features]), challenger.model.predict_proba(train[features])
    )

    # a search on every train row: the refit keeps the search's parameters as they are
    whole = {**settings, "search": {**settings["search"], "max_rows": None}}
    full = tune_model_family(train, schema, whole, whole["families"][family], family)
    assert not full.search.sampled
    refitted = refit_challenger(train, schema, whole, ChallengerChoice(full, 0.5, "max_f1"))
    assert refitted.refit.params == full.params
    assert refitted.model[-1].max_iter == full.params["max_iter"]


@pytest.mark.parametrize("family", ["hist_gradient_boosting", "random_forest"])
def test_folds_fitted_at_once_give_the_search_of_one_after_another(science, family):
    schema, settings, train = science
    results = []
    for fold_jobs in (1, -1):
        config = {**settings, "search": {**settings["search"], "fold_jobs": fold_jobs}}
        results.append(tune_model_family(train, schema, config, config["families"][family], family))
    one_by_one, at_once = results
    assert at_once.params == one_by_one.params
    assert at_once.cv_roc_auc == one_by_one.cv_roc_auc
    # a forest adds its trees' probabilities up on threads in the order they finish, so
    # its last bits vary with or without fold threads; the boosted model's do not
    tolerance = 1e-12 if family == "random_forest" else 0
    np.testing.assert_allclose(
        at_once.oof_probability, one_by_one.oof_probability, rtol=0, atol=tolerance
    )


def test_the_pipeline_refits_once_and_scores_the_challenger_only():
    from churn_kedro.pipelines import data_science, model_promotion

    science_nodes = {n.name: n for n in data_science.create_pipeline().nodes}
    assert {f"tune_{family}" for family in TUNERS} | {
        "select_challenger",
        "refit_challenger",
    } == set(science_nodes)
    assert science_nodes["refit_challenger"].inputs[-1] == "challenger_choice"
    assert science_nodes["refit_challenger"].outputs == ["challenger"]
    [score] = [n for n in model_promotion.create_pipeline().nodes if n.name == "score_holdout"]
    assert score.inputs[0] == "challenger" and "model_candidates" not in score.inputs
