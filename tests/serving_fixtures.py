"""Helpers of the serving, score and docker tests: a real registry with the three model
families fitted on a small generated frame (the committed models.py builds them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from churn_kedro.registry import ModelRegistry
from churn_kedro.schema import Schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PARAMS = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())["schema"]
SCHEMA = Schema.from_params(SCHEMA_PARAMS)
FAST_PARAMS = {
    "logistic_regression": {"C": 1.0},
    "random_forest": {"n_estimators": 30, "max_depth": 8},
    "catboost": {"iterations": 60, "depth": 4},
    "hist_gradient_boosting": {"max_iter": 40, "max_leaf_nodes": 15},
}


def feature_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Typed rows as the pipelines see them: ids as text, numbers float64 with NaN,
    categories as text with missing values (as read back from parquet)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{seed}-{i}" for i in range(rows)],
            "age": rng.integers(18, 90, rows).astype("float64"),
            "annual_premium": np.round(rng.gamma(2.0, 800.0, rows) + 1, 2),
            "claims_count": rng.poisson(1.0, rows).astype("float64"),
            "policy_type": rng.choice(["auto", "home", "life"], rows).astype(object),
        }
    )
    frame.loc[rng.random(rows) < 0.08, "age"] = np.nan
    frame.loc[rng.random(rows) < 0.08, "policy_type"] = np.nan
    return frame


def labels(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    score = (
        0.8 * frame["claims_count"]
        - 0.02 * frame["age"].fillna(50)
        + (frame["policy_type"] == "life")
    )
    return (score + rng.normal(0, 0.7, len(frame)) > 0.0).astype(int).to_numpy()


def fit(family: str, seed: int = 0, rows: int = 400):
    from churn_kedro.pipelines.data_science.models import FAMILIES

    frame = feature_frame(rows, seed)
    model = FAMILIES[family](
        SCHEMA.numeric_features, SCHEMA.categorical_features, FAST_PARAMS[family], seed, None
    )
    return model.fit(frame[SCHEMA.features], labels(frame, seed))


def card(version: str, family: str, threshold: float = 0.5) -> dict:
    return {
        "version": version,
        "family": family,
        "created_at": "2026-11-01T06:00:00Z",
        "threshold": threshold,
        "features": SCHEMA.features,
        "schema": SCHEMA.to_dict(),
        "params": FAST_PARAMS[family],
        "metrics": {"roc_auc": 0.8, "brier": 0.2},
        "data": {"training_rows": 400},
    }


def build_registry(
    root,
    families=("logistic_regression", "random_forest", "catboost", "hist_gradient_boosting"),
    promote: str | None = None,
    storage_options=None,
) -> ModelRegistry:
    """Register one version per family (named v1-<family>, ...); promote ``promote``."""
    registry = ModelRegistry(str(root), storage_options)
    for i, family in enumerate(families, 1):
        register(
            registry,
            f"v{i}-{family}",
            fit(family, seed=i),
            card(f"v{i}-{family}", family, 0.4 + 0.05 * i),
        )
    if promote:
        registry.promote(promote, "test")
    return registry


def instances(rows: int, seed: int = 5) -> list[dict]:
    """Valid /predict instances (JSON values: null for missing)."""
    frame = feature_frame(rows, seed)
    out = []
    for row in frame.to_dict("records"):
        out.append(
            {
                "customer_id": row["customer_id"],
                "age": None if pd.isna(row["age"]) else int(row["age"]),
                "annual_premium": float(row["annual_premium"]),
                "claims_count": int(row["claims_count"]),
                "policy_type": None if pd.isna(row["policy_type"]) else row["policy_type"],
            }
        )
    return out


def register(registry: ModelRegistry, version: str, model, card: dict) -> dict:
    """Register ``model`` with its serving form, as ModelRegistryDataset.save does;
    returns the card's serving entry."""
    from churn_kedro.export import build_serving_export

    export = build_serving_export(model, card)
    registry.register(version, model, {**card, "serving": export.card_entry}, files=export.files)
    return export.card_entry


def forest_format_1(model) -> bytes:
    """The serving form of a random forest Pipeline as format 1 wrote it (float32
    thresholds, child pairs), to prove that versions written then stay servable."""
    from churn_kedro.export import _preprocess_arrays
    from churn_kedro.inference import ServingModel

    preprocess, estimator = model.named_steps["preprocess"], model.named_steps["model"]
    meta, arrays = _preprocess_arrays(preprocess, scaled=False)
    features, thresholds, lefts, rights, values, roots = [], [], [], [], [], []
    offset, depth = 0, 0
    for tree in (e.tree_ for e in estimator.estimators_):
        leaf = tree.children_left == -1
        own = np.arange(tree.node_count) + offset
        features.append(np.where(leaf, 0, tree.feature))
        thresholds.append(np.where(leaf, np.inf, tree.threshold))
        lefts.append(np.where(leaf, own, tree.children_left + offset))
        rights.append(np.where(leaf, own, tree.children_right + offset))
        counts = tree.value[:, 0, :]
        values.append(counts[:, 1] / counts.sum(axis=1))
        roots.append(offset)
        offset += tree.node_count
        depth = max(depth, tree.max_depth)
    threshold = np.concatenate(thresholds)
    threshold32 = threshold.astype(np.float32)
    above = threshold32.astype(np.float64) > threshold
    threshold32[above] = np.nextafter(threshold32[above], np.float32(-np.inf))
    children = np.column_stack([np.concatenate(lefts), np.concatenate(rights)]).ravel()
    arrays.update(
        feature=np.concatenate(features).astype(np.int32),
        threshold32=threshold32,
        children=children.astype(np.int32),
        value=np.concatenate(values),
        roots=np.asarray(roots, dtype=np.int32),
        max_depth=np.asarray([depth], dtype=np.int64),
    )
    return ServingModel({"format": 1, "kind": "random_forest", **meta}, arrays).to_bytes()
