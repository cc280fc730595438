"""The model families: each builds a whole scikit-learn Pipeline (preprocessing + estimator).

Preprocessing lives inside the Pipeline, so it is fitted on the training rows only and
training and serving cannot disagree. Models take a frame of the schema's features:
numeric columns as floats (NaN for missing), categoricals as strings (None or NaN for missing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from churn_kedro.inference import MISSING_CATEGORY  # one name for the missing category


def _fill_missing(frame):
    # Not SimpleImputer: its NaN marker does not match None in object columns, so a
    # None would become a category of its own instead of the missing one.
    frame = pd.DataFrame(frame)
    return frame.astype(object).where(frame.notna(), MISSING_CATEGORY)


def _fill_missing_as_text(frame):
    # CatBoost wants its categorical columns as strings.
    return _fill_missing(frame).astype(str)


def _preprocess(numeric: list[str], categorical: list[str], scale: bool) -> ColumnTransformer:
    numeric_steps = [SimpleImputer(strategy="median", add_indicator=True)]
    if scale:
        numeric_steps.append(StandardScaler())
    return ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric_steps), numeric),
            (
                "categorical",
                make_pipeline(
                    FunctionTransformer(_fill_missing, feature_names_out="one-to-one"),
                    # An unseen category encodes as all zeros: the model's 'other'.
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            ),
        ]
    )


def _one_hot_pipeline(
    numeric: list[str], categorical: list[str], estimator: Any, scale: bool
) -> Pipeline:
    return Pipeline(
        [("preprocess", _preprocess(numeric, categorical, scale=scale)), ("model", estimator)]
    )


def logistic_regression(
    numeric: list[str], categorical: list[str], params: dict[str, Any], seed: int, class_weight
) -> Pipeline:
    estimator = LogisticRegression(
        max_iter=2000, class_weight=class_weight, random_state=seed, **params
    )
    return _one_hot_pipeline(numeric, categorical, estimator, scale=True)


def random_forest(
    numeric: list[str], categorical: list[str], params: dict[str, Any], seed: int, class_weight
) -> Pipeline:
    weight = "balanced_subsample" if class_weight == "balanced" else class_weight
    estimator = RandomForestClassifier(class_weight=weight, random_state=seed, n_jobs=-1, **params)
    return _one_hot_pipeline(numeric, categorical, estimator, scale=False)


def hist_gradient_boosting(
    numeric: list[str], categorical: list[str], params: dict[str, Any], seed: int, class_weight
) -> Pipeline:
    # The forest's preprocessing (median fill + indicators, one-hot), so no missing value
    # reaches the trees and the serving form walks them as it walks the forest's.
    estimator = HistGradientBoostingClassifier(
        class_weight=class_weight, random_state=seed, **params
    )
    return _one_hot_pipeline(numeric, categorical, estimator, scale=False)


def catboost(
    numeric: list[str], categorical: list[str], params: dict[str, Any], seed: int, class_weight
) -> Pipeline:
    try:
        from catboost import CatBoostClassifier
    except ImportError as error:
        raise ImportError(
            "the catboost model family is enabled but CatBoost is not installed: "
            'pip install -e ".[catboost]", or set data_science.families.catboost.enabled: false'
        ) from error

    # CatBoost handles missing numbers and categories natively: no imputation, no encoding.
    preprocess = ColumnTransformer(
        [
            ("numeric", "passthrough", numeric),
            (
                "categorical",
                FunctionTransformer(_fill_missing_as_text, feature_names_out="one-to-one"),
                categorical,
            ),
        ],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    return Pipeline(
        [
            ("preprocess", preprocess),
            (
                "model",
                CatBoostClassifier(
                    cat_features=list(categorical),
                    auto_class_weights="Balanced" if class_weight == "balanced" else None,
                    random_seed=seed,
                    thread_count=-1,
                    verbose=False,
                    allow_writing_files=False,
                    **params,
                ),
            ),
        ]
    )


FAMILIES: dict[str, Callable[..., Pipeline]] = {
    "logistic_regression": logistic_regression,
    "random_forest": random_forest,
    "hist_gradient_boosting": hist_gradient_boosting,
    "catboost": catboost,
}
