"""Nodes of the data_science pipeline. The holdout is never seen here.

Each family's search cross-validates on (a sample of) the train split and returns its
result without fitting on the whole split; only the family chosen by CV is refitted on
every train row (on large data that refit is the costly fit, so it runs once).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.utils.parallel import Parallel, delayed
from threadpoolctl import threadpool_limits

from churn_kedro.contracts import (
    Challenger,
    ChallengerChoice,
    DisabledFamily,
    RefitSummary,
    SearchResult,
    SearchSummary,
)
from churn_kedro.schema import Schema

from .models import FAMILIES

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _suggest(trial: optuna.Trial, name: str, spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "int":
        return trial.suggest_int(
            name, spec["low"], spec["high"], step=spec.get("step", 1), log=spec.get("log", False)
        )
    if kind == "categorical":
        return trial.suggest_categorical(name, spec["choices"])
    if kind == "fixed":  # not searched: the same value in every trial and in the refit
        return spec["value"]
    raise ValueError(
        f"search space of {name!r}: unknown type {kind!r} (float, int, categorical or fixed)"
    )


def _fit(model, X: pd.DataFrame, y: np.ndarray):
    """Fit the Pipeline. A whole-number ``max_samples`` (rows drawn per tree) above the
    rows given means all of them (scikit-learn refuses it otherwise)."""
    estimator = model[-1]
    cap = getattr(estimator, "max_samples", None)
    if isinstance(cap, int) and cap >= len(y):
        estimator.set_params(max_samples=None)
    return model.fit(X, y)


def search_rows(
    X: pd.DataFrame, y: np.ndarray, max_rows: int | None, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows the search cross-validates on: all of them, or a stratified sample of
    ``max_rows`` when the train split is larger (the refit still uses every row)."""
    if not max_rows or len(y) <= max_rows:
        return X, y
    rows, _ = train_test_split(
        np.arange(len(y)), train_size=max_rows, stratify=y, random_state=seed
    )
    rows = np.sort(rows)
    return X.iloc[rows], y[rows]


def tune_model_family(
    train: pd.DataFrame,
    schema_params: dict[str, Any],
    settings: dict[str, Any],
    family_params: dict[str, Any],
    family: str,
) -> SearchResult | DisabledFamily:
    """Search the family's hyperparameters by stratified K-fold CV (ROC-AUC) for its
    trial budget; the result says what the search saw (``refit_challenger`` fits the
    chosen family on the whole train split).

    The budget is a number of trials, so the same data and parameters give the same
    model on any machine; ``time_cap_seconds`` is only a safety cap, logged (and
    recorded in the card) when it stops the search early. On a train split larger than
    ``search.max_rows`` the search sees a stratified sample of that many rows.
    """
    if not family_params.get("enabled", True):
        logger.info("%s: disabled", family)
        return DisabledFamily(family)
    schema = Schema.from_params(schema_params)
    X_all, y_all = train[schema.features], train[schema.target].to_numpy()
    seed, class_weight = settings["random_state"], settings["class_weight"]
    X, y = search_rows(X_all, y_all, (settings.get("search") or {}).get("max_rows"), seed)
    folds = list(StratifiedKFold(settings["cv_folds"], shuffle=True, random_state=seed).split(X, y))
    build = FAMILIES[family]
    fold_jobs = int((settings.get("search") or {}).get("fold_jobs", 1))
    fold_jobs = len(folds) if fold_jobs < 1 else min(fold_jobs, len(folds))
    best: dict[str, Any] = {"score": -np.inf}

    def objective(trial: optuna.Trial) -> float:
        params = {
            name: _suggest(trial, name, spec)
            for name, spec in (family_params.get("search_space") or {}).items()
        }

        def fold_probability(fit_rows, eval_rows):
            model = build(
                schema.numeric_features, schema.categorical_features, params, seed, class_weight
            )
            _fit(model, X.iloc[fit_rows], y[fit_rows])
            return model.predict_proba(X.iloc[eval_rows])[:, 1]

        # The folds fit at once on threads (the estimators release the GIL while they fit),
        # then report in order: the same scores and pruning decisions as one after another.
        # OpenMP threads (histogram boosting) are shared out so the fits do not oversubscribe.
        with threadpool_limits(max(1, (os.cpu_count() or 1) // fold_jobs), user_api="openmp"):
            probabilities = Parallel(n_jobs=fold_jobs, prefer="threads")(
                delayed(fold_probability)(fit_rows, eval_rows) for fit_rows, eval_rows in folds
            )
        oof = np.zeros(len(y))
        scores = []
        for step, ((_, eval_rows), probability) in enumerate(zip(folds, probabilities)):
            oof[eval_rows] = probability
            scores.append(roc_auc_score(y[eval_rows], oof[eval_rows]))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        score = float(np.mean(scores))
        if score > best["score"]:
            best.update(score=score, std=float(np.std(scores)), params=params, oof=oof)
        return score

    study = optuna.create_study(
        direction="maximize",
        # TPE starts modelling after a few random trials (its default waits for 10: our whole budget)
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    budget, cap = int(family_params["n_trials"]), family_params.get("time_cap_seconds")
    started = time.perf_counter()

    def report_progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # progress on long searches, in Kedro's log (so Glue and CloudWatch see it too)
        # a pruned trial carries the mean of its first folds as its value: not a CV score
        value = (
            f"CV ROC-AUC {trial.value:.4f}"
            if trial.state == optuna.trial.TrialState.COMPLETE
            else f"pruned after {len(trial.intermediate_values)} folds"
        )
        best_so_far = study.best_value if study.best_trials else float("nan")
        logger.info(
            "%s: trial %d of %d, %s, %.0f s, best so far %.4f",
            family,
            trial.number + 1,
            budget,
            value,
            time.perf_counter() - started,
            best_so_far,
        )

    study.optimize(objective, n_trials=budget, timeout=cap, callbacks=[report_progress])
    seconds = time.perf_counter() - started
    cap_hit = len(study.trials) < budget
    if cap_hit:
        logger.warning(
            "%s: the time cap of %s s stopped the search after %d of %d trials; the result "
            "depends on this machine's speed (raise time_cap_seconds or lower n_trials)",
            family,
            cap,
            len(study.trials),
            budget,
        )
    if "params" not in best:
        raise RuntimeError(
            f"{family}: no trial completed within the time cap of {cap} s; raise time_cap_seconds"
        )
    logger.info(
        "%s: CV ROC-AUC %.4f ± %.4f after %d trials in %.0f s on %d of %d train rows, params %s",
        family,
        best["score"],
        best["std"],
        len(study.trials),
        seconds,
        len(y),
        len(y_all),
        best["params"],
    )
    return SearchResult(
        family=family,
        params=best["params"],
        cv_roc_auc=best["score"],
        cv_roc_auc_std=best["std"],
        search=SearchSummary(
            rows=len(y),
            train_rows=len(y_all),
            sampled=len(y) < len(y_all),
            folds=settings["cv_folds"],
            trials=len(study.trials),
            trial_budget=budget,
            seconds=round(seconds, 1),
            time_cap_seconds=cap,
            time_cap_hit=cap_hit,
        ),
        oof_probability=best["oof"],
        oof_target=y,
    )


# One plain node function per family (the families are code, their budgets and search
# spaces parameters), so each tuning node has a real name and signature.
def tune_logistic_regression(train, schema_params, settings, family_params):
    """tune_model_family for logistic regression."""
    return tune_model_family(train, schema_params, settings, family_params, "logistic_regression")


def tune_random_forest(train, schema_params, settings, family_params):
    """tune_model_family for the random forest."""
    return tune_model_family(train, schema_params, settings, family_params, "random_forest")


def tune_hist_gradient_boosting(train, schema_params, settings, family_params):
    """tune_model_family for scikit-learn's histogram gradient boosting."""
    return tune_model_family(
        train, schema_params, settings, family_params, "hist_gradient_boosting"
    )


def tune_catboost(train, schema_params, settings, family_params):
    """tune_model_family for CatBoost."""
    return tune_model_family(train, schema_params, settings, family_params, "catboost")


TUNERS = {
    "logistic_regression": tune_logistic_regression,
    "random_forest": tune_random_forest,
    "hist_gradient_boosting": tune_hist_gradient_boosting,
    "catboost": tune_catboost,
}


def choose_threshold(y: np.ndarray, probability: np.ndarray, policy: dict[str, Any]) -> float:
    """Decision threshold from out-of-fold probabilities: max F1, or the best expected
    value of a retention offer (saved_customer_value per retained churner, offer_cost per offer)."""
    if policy["policy"] == "max_f1":
        precision, recall, thresholds = precision_recall_curve(y, probability)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        return float(thresholds[int(np.argmax(f1))])
    if policy["policy"] == "cost":
        order = np.argsort(-probability, kind="stable")
        true_positives = np.cumsum(y[order])
        offers = np.arange(1, len(y) + 1)
        value = policy["saved_customer_value"] * true_positives - policy["offer_cost"] * offers
        return float(probability[order][int(np.argmax(value))])
    raise ValueError(f"threshold.policy {policy['policy']!r}: expected max_f1 or cost")


def select_challenger(
    settings: dict[str, Any], *tuned: SearchResult | DisabledFamily
) -> tuple[ChallengerChoice, dict[str, SearchResult]]:
    """The best family by CV ROC-AUC (never by the holdout) becomes the challenger,
    with its decision threshold from its out-of-fold probabilities; also every enabled
    family's search result (``model_candidates``, reported for each family)."""
    candidates = {c.family: c for c in tuned if isinstance(c, SearchResult)}
    if not candidates:
        raise ValueError("every model family is disabled in parameters_data_science.yml")
    best = max(candidates.values(), key=lambda c: c.cv_roc_auc)
    policy = settings["threshold"]
    threshold = choose_threshold(best.oof_target, best.oof_probability, policy)
    logger.info(
        "Challenger: %s (CV ROC-AUC %.4f), threshold %.3f by %s",
        best.family,
        best.cv_roc_auc,
        threshold,
        policy["policy"],
    )
    return ChallengerChoice(best, threshold, policy["policy"]), candidates


def refit_params(result: SearchResult, settings: dict[str, Any]) -> dict[str, Any]:
    """The search's best parameters, with the family's ``sampled_refit`` settings on top
    when the search saw only a sample of the train split.

    Parameters chosen on a sample size a model for the sample: a boosted model's number
    of iterations, say, is too few for many times the rows. ``sampled_refit`` lets the
    refit choose such a parameter on the whole split instead (e.g. early stopping on a
    validation fraction of it, under a higher ceiling)."""
    family = (settings.get("families") or {}).get(result.family) or {}
    if not result.search.sampled:
        return dict(result.params)
    return {**result.params, **(family.get("sampled_refit") or {})}


def refit_challenger(
    train: pd.DataFrame,
    schema_params: dict[str, Any],
    settings: dict[str, Any],
    choice: ChallengerChoice,
) -> Challenger:
    """The chosen family, with the search's best parameters, fitted on every train row."""
    schema = Schema.from_params(schema_params)
    X, y = train[schema.features], train[schema.target].to_numpy()
    result = choice.result
    params = refit_params(result, settings)
    model = FAMILIES[result.family](
        schema.numeric_features,
        schema.categorical_features,
        params,
        settings["random_state"],
        settings["class_weight"],
    )
    logger.info("%s: refitting on %d train rows with %s", result.family, len(y), params)
    started = time.perf_counter()
    _fit(model, X, y)
    seconds = round(time.perf_counter() - started, 1)
    iterations = getattr(model[-1], "n_iter_", None)  # boosting: after early stopping
    logger.info(
        "%s: refitted in %.0f s%s",
        result.family,
        seconds,
        f", {iterations} iterations" if iterations is not None else "",
    )
    return Challenger(
        result=result,
        threshold=choice.threshold,
        threshold_policy=choice.threshold_policy,
        model=model,
        refit=RefitSummary(rows=len(y), seconds=seconds, params=params),
    )
