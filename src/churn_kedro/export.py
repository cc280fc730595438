"""Build time: export a fitted Pipeline (models.py's families) to its numpy-only
serving form, the file the serving image loads (``churn_kedro.inference.ServingModel``).

Runs where the model is registered (``ModelRegistryDataset.save``), so it may use
pandas, scikit-learn and CatBoost; the serving image never imports it. The export is
checked against the Pipeline's own probabilities on probe rows drawn from the card's
schema (bounds, every allowed category, missing values, an unseen category): a
difference above 1e-9 declines it. A declined export leaves the version registered but
not promotable, with the reason in its card.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from churn_kedro.inference import (
    FOREST_CODE_BITS,
    FOREST_FEATURE_SHIFT,
    FOREST_LEAF_CODE,
    FORMAT,
    MISSING_CATEGORY,
    ServingModel,
    _missing,
    _numbers,
)
from churn_kedro.registry import SERVING_FILE

TOLERANCE = 1e-9
UNSEEN_PROBE = "__never_seen_in_training__"
MAX_JOINT_CATEGORIES = 50_000


@dataclass(frozen=True)
class ServingExport:
    """The serving form of one version, or why there is none.

    ``files`` go beside model.joblib; ``card_entry`` is the card's ``serving`` section:
    ``{"servable": true, "file", "format", "max_abs_difference"}`` or
    ``{"servable": false, "reason"}``.
    """

    files: dict[str, bytes]
    card_entry: dict[str, Any]

    @property
    def servable(self) -> bool:
        return bool(self.card_entry["servable"])


def build_serving_export(model: Any, card: dict[str, Any]) -> ServingExport:
    """Export and check ``model``; a model the serving form cannot evaluate exactly gives
    an export with no files and the reason."""
    try:
        serving = export_serving_form(model, card, check=False)
        worst = check_serving_form(model, serving, card)
    except (ValueError, KeyError, AttributeError) as exc:  # UnsupportedModel is a ValueError
        return ServingExport({}, {"servable": False, "reason": str(exc)})
    return ServingExport(
        {SERVING_FILE: serving.to_bytes()},
        {"servable": True, "file": SERVING_FILE, "format": FORMAT, "max_abs_difference": worst},
    )


def pipeline_probability(model: Any, card: Mapping[str, Any], features: Any) -> np.ndarray:
    """The Pipeline's own probabilities for ``features`` given as the API receives them."""
    import pandas as pd

    schema = card["schema"]
    frame = pd.DataFrame(
        {
            **{n: _numbers(features[n]) for n in schema["numeric_features"]},
            # NaN, not None: SimpleImputer(missing_values=nan) leaves None in object columns alone.
            **{
                n: pd.Series([np.nan if _missing(v) else str(v) for v in features[n]], dtype=object)
                for n in schema["categorical_features"]
            },
        }
    )
    return np.asarray(model.predict_proba(frame[list(card["features"])])[:, 1], dtype="float64")


class UnsupportedModel(ValueError):
    """The model is not one of the Pipelines the serving form knows how to evaluate."""


def export_serving_form(model: Any, card: dict[str, Any], check: bool = True) -> ServingModel:
    """The serving form of ``model`` (raises UnsupportedModel for anything else)."""
    steps = getattr(model, "named_steps", None)
    if not steps or set(steps) != {"preprocess", "model"}:
        raise UnsupportedModel(f"{type(model).__name__} is not a preprocess+model Pipeline")
    preprocess, estimator = steps["preprocess"], steps["model"]
    kind = type(estimator).__name__
    if kind == "LogisticRegression":
        serving = _linear(preprocess, estimator)
    elif kind == "RandomForestClassifier":
        serving = _forest(preprocess, estimator)
    elif kind == "HistGradientBoostingClassifier":
        serving = _boosted(preprocess, estimator)
    elif kind == "CatBoostClassifier":
        serving = _oblivious(preprocess, estimator, card)
    else:
        raise UnsupportedModel(f"no serving form for a {kind}")
    if check:
        check_serving_form(model, serving, card)
    return serving


def check_serving_form(
    model: Any, serving: ServingModel, card: dict[str, Any], rows: int = 2000
) -> float:
    """Largest |Pipeline - serving form| probability on probe rows; raises above 1e-9."""
    probe = probe_rows(card, rows)
    expected = pipeline_probability(model, card, probe)
    got = serving.probability(probe)
    worst = float(np.max(np.abs(expected - got)))
    if not worst <= TOLERANCE:
        raise ValueError(
            f"serving form of {card.get('version')} differs from its Pipeline by {worst:.3g}"
        )
    return worst


def probe_rows(card: dict[str, Any], rows: int, seed: int = 0) -> dict[str, list]:
    """Rows within the schema's rules, with missing values and an unseen category."""
    rng = np.random.default_rng(seed)
    schema = card["schema"]
    out: dict[str, list] = {}
    for name, rule in schema["numeric_features"].items():
        low = rule.get("min", rule.get("gt", 0.0))
        high = rule.get("max", rule.get("lt", max(low, 0.0) * 10 + 10_000.0))
        values = rng.uniform(low, high, rows)
        if rule.get("integer"):
            values = np.round(values)
        values[rng.random(rows) < 0.1] = np.nan
        out[name] = values.tolist()
    for name, rule in schema["categorical_features"].items():
        choices = [*rule.get("values", []), None, UNSEEN_PROBE]
        out[name] = [choices[i] for i in rng.integers(0, len(choices), rows)]
    return out


def _columns(preprocess, expected: tuple[str, ...]) -> dict[str, tuple[Any, list[str]]]:
    transformers = {
        name: (trans, list(cols))
        for name, trans, cols in preprocess.transformers_
        if name != "remainder"
    }
    if tuple(transformers) != expected:
        raise UnsupportedModel(
            f"preprocess has transformers {list(transformers)}, expected {list(expected)}"
        )
    return transformers


def _preprocess_arrays(preprocess, scaled: bool) -> tuple[dict, dict]:
    columns = _columns(preprocess, ("numeric", "categorical"))
    numeric_pipe, numeric = columns["numeric"]
    categorical_pipe, categorical = columns["categorical"]
    imputer = numeric_pipe.steps[0][1]
    arrays: dict[str, np.ndarray] = {"fill": np.asarray(imputer.statistics_, dtype="float64")}
    if len(arrays["fill"]) != len(numeric) or np.isnan(arrays["fill"]).any():
        raise UnsupportedModel("a numeric column had no value at all in training")
    indicator = getattr(imputer, "indicator_", None)
    arrays["indicator"] = np.asarray(
        indicator.features_ if indicator is not None else [], dtype=np.int64
    )
    if scaled:
        scaler = numeric_pipe.steps[1][1]
        width = len(numeric) + len(arrays["indicator"])
        arrays["mean"] = np.asarray(
            scaler.mean_ if scaler.with_mean else np.zeros(width), dtype="float64"
        )
        arrays["scale"] = np.asarray(
            scaler.scale_ if scaler.with_std else np.ones(width), dtype="float64"
        )
    encoder = categorical_pipe.steps[-1][1]
    if encoder.drop is not None or getattr(encoder, "infrequent_categories_", None):
        raise UnsupportedModel("one-hot encoder drops or groups categories")
    categories = [list(c) for c in encoder.categories_]
    if not all(isinstance(v, str) for c in categories for v in c):
        raise UnsupportedModel("a categorical column was trained with non-text categories")
    meta = {"numeric": numeric, "categorical": categorical, "categories": categories}
    return meta, arrays


def _linear(preprocess, estimator) -> ServingModel:
    if len(estimator.classes_) != 2:
        raise UnsupportedModel("not a binary classifier")
    meta, arrays = _preprocess_arrays(preprocess, scaled=True)
    arrays["coef"] = np.asarray(estimator.coef_[0], dtype="float64")
    arrays["intercept"] = np.asarray(estimator.intercept_, dtype="float64")
    return ServingModel({"format": FORMAT, "kind": "logistic_regression", **meta}, arrays)


@dataclass(frozen=True)
class _Tree:
    """One fitted tree as the packing below needs it: sklearn's layout (children_left
    -1 at a leaf), a float64 threshold per split (go right when x > threshold) and the
    value each leaf adds."""

    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf_value: np.ndarray
    max_depth: int


def _forest(preprocess, estimator) -> ServingModel:
    if len(estimator.classes_) != 2:
        raise UnsupportedModel("not a binary classifier")
    trees = []
    for fitted in estimator.estimators_:
        t = fitted.tree_
        counts = t.value[:, 0, :]
        trees.append(
            _Tree(
                t.children_left,
                t.children_right,
                t.feature,
                t.threshold,
                counts[:, 1] / counts.sum(axis=1),
                t.max_depth,
            )
        )
    return _packed_trees(preprocess, estimator, trees, "random_forest", {})


def _boosted(preprocess, estimator) -> ServingModel:
    """HistGradientBoostingClassifier: the sum of the trees' leaf values plus the
    baseline is the log-odds. It compares float64 values with float64 thresholds; the
    preprocessing fills every missing number, so its NaN routing never applies."""
    if len(estimator.classes_) != 2 or estimator.n_trees_per_iteration_ != 1:
        raise UnsupportedModel("not a binary classifier")
    if getattr(estimator, "is_categorical_", None) is not None and estimator.is_categorical_.any():
        raise UnsupportedModel("native categorical splits have no serving form")
    trees = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        trees.append(
            _Tree(
                np.where(leaf, -1, nodes["left"].astype(np.int64)),
                np.where(leaf, -1, nodes["right"].astype(np.int64)),
                nodes["feature_idx"].astype(np.int64),
                nodes["num_threshold"].astype(np.float64),
                np.where(leaf, nodes["value"], 0.0).astype(np.float64),
                int(nodes["depth"].max()),
            )
        )
    baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(1)
    return _packed_trees(
        preprocess, estimator, trees, "hist_gradient_boosting", {"baseline": baseline}
    )


def _packed_trees(
    preprocess, estimator, trees: list[_Tree], kind: str, extra: dict[str, np.ndarray]
) -> ServingModel:
    """Each tree renumbered breadth-first, so that a node's right child is its left
    child + 1, and each node packed in one int64 (inference.FOREST_* bit fields): its
    left child, its feature, and its threshold as a position in that feature's sorted
    split borders. A walk step is then one gather of the node and one of the row's
    border code. Leaves point at themselves with a border position no code exceeds."""
    meta, arrays = _preprocess_arrays(preprocess, scaled=False)
    width = estimator.n_features_in_
    splits = [t.children_left != -1 for t in trees]
    split_feature = np.concatenate([t.feature[s] for t, s in zip(trees, splits)])
    split_threshold = np.concatenate([t.threshold[s] for t, s in zip(trees, splits)])
    borders = [np.unique(split_threshold[split_feature == f]) for f in range(width)]
    if (
        max(map(len, borders), default=0) >= FOREST_LEAF_CODE
        or width >= 1 << (63 - FOREST_FEATURE_SHIFT)
        or sum(len(t.children_left) for t in trees) >= 1 << 32
    ):
        raise UnsupportedModel(f"{kind} too large for the packed serving form")
    nodes, values, roots = [], [], []
    offset, depth = 0, 0
    for tree in trees:
        count = len(tree.children_left)
        order = _breadth_first(tree.children_left, tree.children_right)
        renumbered = np.empty(count, dtype=np.int64)
        renumbered[order] = np.arange(count)
        leaf = tree.children_left[order] == -1
        left = np.where(leaf, np.arange(count), renumbered[tree.children_left[order]]) + offset
        feature = np.where(leaf, 0, tree.feature[order]).astype(np.int64)
        threshold = tree.threshold[order]
        code = np.full(count, FOREST_LEAF_CODE, dtype=np.int64)
        for f in np.unique(feature[~leaf]):
            split = ~leaf & (feature == f)
            code[split] = np.searchsorted(borders[f], threshold[split])
        nodes.append(left | code << FOREST_CODE_BITS | feature << FOREST_FEATURE_SHIFT)
        values.append(tree.leaf_value[order])
        roots.append(offset)
        offset += count
        depth = max(depth, tree.max_depth)
    arrays.update(
        nodes=np.concatenate(nodes),
        value=np.concatenate(values),
        roots=np.asarray(roots, dtype=np.int64),
        borders=np.concatenate(borders),
        border_offsets=np.cumsum([0, *map(len, borders)]).astype(np.int64),
        max_depth=np.asarray([depth], dtype=np.int64),
        **extra,
    )
    return ServingModel({"format": FORMAT, "kind": kind, **meta}, arrays)


def _breadth_first(children_left: np.ndarray, children_right: np.ndarray) -> np.ndarray:
    """Old node ids in breadth-first order: the two children of a node are adjacent."""
    order = [0]
    for node in order:  # grows while it is walked
        if children_left[node] != -1:
            order += [children_left[node], children_right[node]]
    return np.asarray(order, dtype=np.int64)


def _oblivious(preprocess, estimator, card: dict[str, Any]) -> ServingModel:
    """CatBoost's oblivious trees from its JSON export. Float splits keep their borders.
    A split on a categorical statistic (CTR or one-hot) depends only on the categories
    and on a few binarized floats (CatBoost combines them), so its outcome is tabulated
    for every combination of known categories (+ one 'unseen' code each) and float
    bits, read off ``calc_leaf_indexes`` on probe rows."""
    import pandas as pd
    from catboost import Pool

    columns = _columns(preprocess, ("numeric", "categorical"))
    numeric, categorical = columns["numeric"][1], columns["categorical"][1]
    schema_categories = card["schema"]["categorical_features"]
    categories = []
    for name in categorical:
        values = schema_categories.get(name, {}).get("values")
        if values is None:
            raise UnsupportedModel(f"the card lists no values for categorical {name}")
        categories.append([str(v) for v in values] + [MISSING_CATEGORY])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.json")
        estimator.save_model(path, format="json")
        with open(path) as f:
            doc = json.load(f)
    info = doc["features_info"]
    float_info = {f["flat_feature_index"]: f for f in info.get("float_features", [])}
    if sorted(float_info) != list(range(len(numeric))):
        raise UnsupportedModel("CatBoost float features are not the numeric columns in order")
    floats_by_index = sorted(info.get("float_features", []), key=lambda f: f["feature_index"])
    nan_true = np.array(
        [float_info[i].get("nan_value_treatment") == "AsTrue" for i in range(len(numeric))]
    )
    # split_index numbers the binary features: float borders, one-hot values, then CTR borders.
    binary: list[tuple] = [
        ("float", f["feature_index"], b) for f in floats_by_index for b in f["borders"]
    ]
    for one_hot in info.get("one_hot_features", []) or []:
        binary += [("onehot", one_hot["cat_feature_index"], v) for v in one_hot["values"]]
    for ctr in info.get("ctrs", []) or []:
        conditions = [
            (e["float_feature_index"], e["border"])
            for e in ctr["elements"]
            if e["combination_element"] == "float_feature"
        ]
        if any(
            e["combination_element"] not in ("cat_feature_value", "float_feature")
            for e in ctr["elements"]
        ):
            raise UnsupportedModel(
                "a CTR combines elements other than categories and float borders"
            )
        binary += [("ctr", tuple(conditions), b) for b in ctr["borders"]]

    unique: dict[int, int] = {}  # split_index -> position in the unique split arrays
    occurrence, depths, tree_start, leaf_values, leaf_start, first_seen = [], [], [], [], [], {}
    bias_extra, n_leaves = 0.0, 0
    for t, tree in enumerate(doc["oblivious_trees"]):
        splits = tree["splits"] or []
        if not splits:  # a constant tree
            bias_extra += tree["leaf_values"][0]
            continue
        if len(tree["leaf_values"]) != 2 ** len(splits):
            raise UnsupportedModel("a tree with more than one output per leaf")
        tree_start.append(len(occurrence))
        leaf_start.append(n_leaves)
        n_leaves += len(tree["leaf_values"])
        leaf_values += tree["leaf_values"]
        for d, split in enumerate(splits):
            index = split["split_index"]
            if binary[index][0] == "float" and (
                binary[index][1] != split["float_feature_index"]
                or binary[index][2] != split["border"]
            ):
                raise UnsupportedModel(f"split_index {index} does not match the float borders")
            unique.setdefault(index, len(unique))
            first_seen.setdefault(index, (t, d))
            occurrence.append(unique[index])
            depths.append(d)

    order = sorted(unique, key=unique.get)
    kinds = np.array([0 if binary[i][0] == "float" else 1 for i in order], dtype=np.int64)
    cat_splits = [i for i in order if binary[i][0] != "float"]
    width = max([len(binary[i][1]) for i in cat_splits if binary[i][0] == "ctr"] + [0])
    if width > 16 or max(depths, default=0) >= 16:
        raise UnsupportedModel("trees deeper than 16 or CTRs of more than 16 float borders")
    sizes = [len(c) + 1 for c in categories]
    joint_count = int(np.prod(sizes)) if categories else 1
    if joint_count * 2**width > MAX_JOINT_CATEGORIES:
        raise UnsupportedModel(
            f"{joint_count} category combinations x {2**width} are too many to tabulate"
        )
    cond_feature = np.zeros((len(cat_splits), width), dtype=np.int64)
    cond_border = np.zeros((len(cat_splits), width))
    cond_used = np.zeros((len(cat_splits), width), dtype=bool)
    table = np.zeros((len(cat_splits), joint_count, 2**width), dtype=np.uint8)
    if cat_splits:
        combos = list(itertools.product(*[range(s) for s in sizes]))  # joint code order
        cats = {
            name: [(categories[i] + [UNSEEN_PROBE])[c[i]] for c in combos]
            for i, name in enumerate(categorical)
        }
        frames, where = [], []
        for j, index in enumerate(cat_splits):
            conditions = binary[index][1] if binary[index][0] == "ctr" else ()
            for k, (feature, border) in enumerate(conditions):
                cond_feature[j, k], cond_border[j, k], cond_used[j, k] = feature, border, True
            for bits in range(2 ** len(conditions)):
                values = _float_values(conditions, bits, len(numeric))
                if values is None:
                    continue  # no number satisfies these bits together
                frames.append(
                    pd.DataFrame(
                        {**{n: np.full(joint_count, v) for n, v in zip(numeric, values)}, **cats}
                    )
                )
                where.append((j, bits))
        probe = pd.concat(frames, ignore_index=True)
        leaves = np.asarray(estimator.calc_leaf_indexes(Pool(probe, cat_features=categorical)))
        for block, (j, bits) in enumerate(where):
            t, d = first_seen[cat_splits[j]]
            rows = leaves[block * joint_count : (block + 1) * joint_count, t]
            table[j, :, bits] = (rows >> d) & 1
    split_feature = np.zeros(len(order), dtype=np.int64)
    split_border = np.zeros(len(order))
    for u, index in enumerate(order):
        if kinds[u] == 0:
            split_feature[u], split_border[u] = binary[index][1], binary[index][2]
        else:
            split_feature[u] = cat_splits.index(index)

    depth = max(depths) + 1 if depths else 0
    tree_splits = np.full(
        (len(tree_start), depth), len(order), dtype=np.int64
    )  # len(order): the 0 column
    for tree, (start, end) in enumerate(zip(tree_start, [*tree_start[1:], len(occurrence)])):
        tree_splits[tree, : end - start] = occurrence[start:end]
    scale, biases = doc.get("scale_and_bias", [1.0, [0.0]])
    arrays = {
        "tree_splits": tree_splits,
        "split_kind": kinds,
        "split_feature": split_feature,
        "border": split_border,
        "leaf_values": np.asarray(leaf_values, dtype="float64"),
        "leaf_start": np.asarray(leaf_start, dtype=np.int64),
        "nan_true": nan_true,
        "cond_feature": cond_feature,
        "cond_border": cond_border,
        "cond_used": cond_used,
        "cat_table": table,
        "scale": np.asarray([scale], dtype="float64"),
        "bias": np.asarray([biases[0] + scale * bias_extra], dtype="float64"),
    }
    meta = {
        "format": FORMAT,
        "kind": "catboost",
        "numeric": numeric,
        "categorical": categorical,
        "categories": categories,
    }
    return ServingModel(meta, arrays)


def _float_values(conditions, bits: int, count: int) -> list[float] | None:
    """Float feature values whose binarization gives ``bits`` on ``conditions``
    (bit k: value > border k), or None when that is impossible."""
    low = [-np.inf] * count
    high = [np.inf] * count
    for k, (feature, border) in enumerate(conditions):
        if bits >> k & 1:
            low[feature] = max(low[feature], border)
        else:
            high[feature] = min(high[feature], border)
    values = []
    for lo, hi in zip(low, high):
        if not lo < hi:
            return None
        if np.isfinite(hi):
            values.append(hi)  # value <= hi, and hi > lo
        elif np.isfinite(lo):  # clearly above lo, also once rounded to float32 (lo may be -FLT_MAX)
            values.append(lo + max(1.0, abs(lo) * 1e-3))
        else:
            values.append(0.0)
    return values
