"""Nodes of the data_science pipeline. The holdout is never seen here."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_auc_score
from sklearn.model_selection import StratifiedKFold

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
    raise ValueError(f"search space of {name!r}: unknown type {kind!r} (float, int or categorical)")


def tune_model_family(
    train: pd.DataFrame,
    schema_params: dict[str, Any],
    settings: dict[str, Any],
    family_params: dict[str, Any],
    family: str,
) -> dict[str, Any] | None:
    """Search the family's hyperparameters by stratified K-fold CV (ROC-AUC) within its
    trial/time budget, then refit the best on the whole train split.

    Returns the candidate: family, params, CV mean/std, out-of-fold probabilities of the
    best trial (for the decision threshold) and the fitted Pipeline; None when disabled.
    """
    if not family_params.get("enabled", True):
        logger.info("%s: disabled", family)
        return None
    schema = Schema.from_params(schema_params)
    X, y = train[schema.features], train[schema.target].to_numpy()
    seed, class_weight = settings["random_state"], settings["class_weight"]
    folds = list(StratifiedKFold(settings["cv_folds"], shuffle=True, random_state=seed).split(X, y))
    build = FAMILIES[family]
    best: dict[str, Any] = {"score": -np.inf}

    def objective(trial: optuna.Trial) -> float:
        params = {
            name: _suggest(trial, name, spec)
            for name, spec in (family_params.get("search_space") or {}).items()
        }
        oof = np.zeros(len(y))
        scores = []
        for step, (fit_rows, eval_rows) in enumerate(folds):
            model = build(
                schema.numeric_features, schema.categorical_features, params, seed, class_weight
            )
            model.fit(X.iloc[fit_rows], y[fit_rows])
            oof[eval_rows] = model.predict_proba(X.iloc[eval_rows])[:, 1]
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
    study.optimize(
        objective,
        n_trials=family_params.get("n_trials"),
        timeout=family_params.get("timeout_seconds"),
    )
    if "params" not in best:
        raise RuntimeError(f"{family}: no trial completed within its budget; raise timeout_seconds")
    model = build(
        schema.numeric_features, schema.categorical_features, best["params"], seed, class_weight
    )
    model.fit(X, y)
    logger.info(
        "%s: CV ROC-AUC %.4f ± %.4f after %d trials, params %s",
        family,
        best["score"],
        best["std"],
        len(study.trials),
        best["params"],
    )
    return {
        "family": family,
        "params": best["params"],
        "cv_roc_auc": best["score"],
        "cv_roc_auc_std": best["std"],
        "cv_folds": settings["cv_folds"],
        "n_trials": len(study.trials),
        "oof_probability": best["oof"],
        "model": model,
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
    train: pd.DataFrame, schema_params: dict[str, Any], settings: dict[str, Any], *candidates
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The best family by CV ROC-AUC (never by the holdout) becomes the challenger,
    with its decision threshold from its out-of-fold probabilities."""
    tuned = {c["family"]: c for c in candidates if c is not None}
    if not tuned:
        raise ValueError("every model family is disabled in parameters_data_science.yml")
    best = max(tuned.values(), key=lambda c: c["cv_roc_auc"])
    y = train[Schema.from_params(schema_params).target].to_numpy()
    threshold = choose_threshold(y, best["oof_probability"], settings["threshold"])
    logger.info(
        "Challenger: %s (CV ROC-AUC %.4f), threshold %.3f by %s",
        best["family"],
        best["cv_roc_auc"],
        threshold,
        settings["threshold"]["policy"],
    )
    challenger = {k: v for k, v in best.items() if k != "oof_probability"}
    challenger.update(threshold=threshold, threshold_policy=settings["threshold"]["policy"])
    return challenger, tuned
