"""The one inference function (see docs/architecture.md: pipelines): named features in -> churn probability,
label at the card's threshold, model version out. The ``score`` pipeline and the API
both call :func:`predict`.

It needs numpy only: importing scikit-learn alone takes ~1.9 s here, twice the serving
cold-start budget, so the champion is evaluated from its *serving form*
(:class:`ServingModel`), a numpy-only copy of the fitted Pipeline exported at
registration (``churn_kedro.export``, build time) and checked there to give the
Pipeline's probabilities within 1e-9. A version without one cannot be promoted.
Every format ever written stays readable (``READABLE_FORMATS``), so a rollback to an
older version keeps working after the format changes.
Missing categoricals (None or NaN) become the Pipelines' ``__missing__`` category.
"""

from __future__ import annotations

import functools
import io
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MISSING_CATEGORY = "__missing__"  # models.py fills missing categories with it
FORMAT = 2  # what export writes. 2: the random forest's packed nodes
READABLE_FORMATS = (1, 2)  # 1: the forest as float32 thresholds and child pairs

# A random forest node is one int64 (export._forest): bits 0-31 its left child (the right
# child is left + 1), bits 32-51 its threshold's position among its feature's sorted
# borders, bits 52-62 its feature.
FOREST_CODE_BITS = 32
FOREST_LEFT_MASK = (1 << FOREST_CODE_BITS) - 1
FOREST_FEATURE_SHIFT = 52
FOREST_LEAF_CODE = (1 << (FOREST_FEATURE_SHIFT - FOREST_CODE_BITS)) - 1  # no row's code exceeds it
FOREST_BLOCK_ROWS = (
    512  # rows walked together: their (rows x trees) state stays in L2 (2 MB a core here)
)
OBLIVIOUS_BLOCK_ROWS = (
    512  # CatBoost rows scored together: their (splits x rows) bits stay in cache
)


@dataclass(frozen=True)
class Prediction:
    model_version: str
    probability: np.ndarray  # float64, P(churn)
    label: np.ndarray  # bool, probability >= the card's threshold


def predict(champion: Mapping[str, Any], features: Any) -> Prediction:
    """Score ``features`` (a DataFrame or a mapping column -> sequence holding the
    card's "features": numbers with NaN/None for missing, categories as text or None)
    with ``champion`` = {"version", "model", "card"}."""
    card = champion["card"]
    probability = champion["model"].probability(features)
    threshold = float(card["threshold"])
    return Prediction(str(champion["version"]), probability, probability >= threshold)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _numbers(values: Any) -> np.ndarray:
    return (
        np.array([np.nan if v is None else v for v in values], dtype="float64")
        if isinstance(values, list)
        else np.asarray(values, dtype="float64")
    )


def _codes(values: Any, categories: Sequence[str], unknown: int) -> np.ndarray:
    """Index of each value in ``categories`` (missing -> the __missing__ category, when
    the model saw it); anything else -> ``unknown``."""
    index = {c: i for i, c in enumerate(categories)}
    missing = index.get(MISSING_CATEGORY, unknown)
    index[None] = missing
    values = values if isinstance(values, list) else list(values)
    # one dict lookup a value at C speed; only the values it did not find (NaN, a number,
    # an unseen category: few) are looked at again one by one
    out = np.fromiter(
        map(index.get, values, itertools.repeat(unknown)), dtype=np.int64, count=len(values)
    )
    for i in np.flatnonzero(out == unknown).tolist():
        value = values[i]
        out[i] = missing if _missing(value) else index.get(str(value), unknown)
    return out


def _in_blocks(score: Any, blocks: list[tuple]) -> np.ndarray:
    """``score(*block)`` of each block of rows, concatenated. Several blocks run on every
    core: numpy releases the GIL in the gathers and ufuncs that make up a block's work."""
    if len(blocks) <= 1:
        return score(*blocks[0]) if blocks else np.zeros(0)
    return np.concatenate(list(_threads().map(lambda block: score(*block), blocks)))


@functools.cache
def _threads():
    from concurrent.futures import ThreadPoolExecutor  # here: keeps it off the cold start

    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="forest-walk")


def _dense(columns, dtype=np.float32) -> np.ndarray:
    """The design columns as one dense matrix, one-hot blocks expanded, in the dtype the
    trees compare their thresholds with: float32 for sklearn's decision trees, float64
    for its histogram gradient boosting."""
    block, onehots = columns
    parts = [np.column_stack(block)] if block else []
    for codes, width in onehots:
        hot = np.zeros((len(codes), width))
        known = codes >= 0
        hot[np.flatnonzero(known), codes[known]] = 1.0
        parts.append(hot)
    return np.hstack(parts).astype(dtype)


class ServingModel:
    """A numpy-only evaluation of one fitted Pipeline (logistic regression, random forest,
    histogram gradient boosting or CatBoost). ``meta`` is JSON; ``arrays`` are numpy arrays; both live in one .npz."""

    def __init__(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.meta = meta
        self.arrays = arrays
        self.kind = meta["kind"]
        self.numeric = list(meta["numeric"])
        self.categorical = list(meta["categorical"])

    # ---- persistence --------------------------------------------------------------
    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            __meta__=np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8),
            **self.arrays,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ServingModel:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop("__meta__").tobytes())
        if meta.get("format") not in READABLE_FORMATS:
            readable = ", ".join(map(str, READABLE_FORMATS))
            raise ValueError(
                f"serving form format {meta.get('format')!r}: this code reads {readable}"
            )
        return cls(meta, arrays)

    # ---- evaluation ---------------------------------------------------------------
    def probability(self, features: Any) -> np.ndarray:
        numeric = [_numbers(features[n]) for n in self.numeric]
        if self.kind == "catboost":
            categorical = [list(features[n]) for n in self.categorical]
            size = len(numeric[0]) if numeric else len(categorical[0])
            # in row blocks: the per-split bit matrix of a whole batch would not fit in cache
            rows = [
                slice(i, i + OBLIVIOUS_BLOCK_ROWS) for i in range(0, size, OBLIVIOUS_BLOCK_ROWS)
            ]
            return _in_blocks(
                self._oblivious,
                [
                    (
                        [x[r] for x in numeric],
                        {name: c[r] for name, c in zip(self.categorical, categorical)},
                    )
                    for r in rows
                ],
            )
        columns = self._design_columns(numeric, features)
        if self.kind == "logistic_regression":
            return self._linear(columns)
        if self.kind == "random_forest":
            if self.meta["format"] == 1:
                return self._forest_v1(columns)
            return self._forest(_dense(columns).astype(np.float64)) / len(self.arrays["roots"])
        if self.kind == "hist_gradient_boosting":
            log_odds = self.arrays["baseline"][0] + self._forest(_dense(columns, np.float64))
            return 1.0 / (1.0 + np.exp(-log_odds))
        raise ValueError(f"unknown serving form kind {self.kind!r}")

    def _design_columns(self, numeric: list[np.ndarray], features: Any) -> list[Any]:
        """The ColumnTransformer's output: imputed (and scaled) numbers, missing
        indicators, then the one-hot blocks, each given as (codes, width)."""
        a = self.arrays
        block = [np.where(np.isnan(x), fill, x) for x, fill in zip(numeric, a["fill"])]
        block += [np.isnan(numeric[i]).astype("float64") for i in a["indicator"]]
        if "mean" in a:
            block = [(x - m) / s for x, m, s in zip(block, a["mean"], a["scale"])]
        onehots = []
        for name, categories in zip(self.categorical, self.meta["categories"]):
            # an unseen category is all zeros (OneHotEncoder(handle_unknown="ignore"))
            onehots.append((_codes(features[name], categories, -1), len(categories)))
        return [block, onehots]

    def _linear(self, columns) -> np.ndarray:
        block, onehots = columns
        weights = self.arrays["coef"]
        n = len(block[0]) if block else len(onehots[0][0])
        z = np.full(n, float(self.arrays["intercept"][0]))
        for x, w in zip(block, weights):
            z += x * w
        offset = len(block)
        for codes, width in onehots:
            w = np.append(weights[offset : offset + width], 0.0)  # code -1 -> the appended 0
            z += w[codes]
            offset += width
        return 1.0 / (1.0 + np.exp(-z))

    def _forest_v1(self, columns) -> np.ndarray:
        """Format 1: every tree walked as (feature, float32 threshold, child pair) arrays."""
        x = _dense(columns)
        a = self.arrays
        # threshold32: the largest float32 <= each float64 threshold, so that float32
        # x <= threshold32 exactly when x <= threshold (sklearn's comparison)
        feature, threshold, children = a["feature"], a["threshold32"], a["children"]
        roots, depth, value = a["roots"], int(a["max_depth"][0]), a["value"]
        out = np.empty(len(x))
        width = np.int32(x.shape[1])
        for start in range(0, len(x), FOREST_BLOCK_ROWS):
            flat = x[start : start + FOREST_BLOCK_ROWS].ravel()
            count = len(flat) // x.shape[1]
            base = (np.arange(count, dtype=np.int32) * width)[:, None]
            node = np.broadcast_to(roots, (count, len(roots))).copy()
            for _ in range(depth):  # leaves point at themselves: extra steps are no-ops
                right = flat[base + feature[node]] > threshold[node]
                node = children[2 * node + right]
            out[start : start + FOREST_BLOCK_ROWS] = value[node].sum(axis=1) / len(roots)
        return out

    def _forest(self, x: np.ndarray) -> np.ndarray:
        """The sum of the trees' leaf values for each row of the design matrix ``x``."""
        borders, offsets = self.arrays["borders"], self.arrays["border_offsets"]
        # A row's code for a feature: how many of the feature's borders lie below its
        # value, so that value > borders[k] exactly when code > k.
        codes = np.column_stack(
            [
                np.searchsorted(borders[offsets[f] : offsets[f + 1]], x[:, f])
                for f in range(x.shape[1])
            ]
        )
        return _in_blocks(
            self._walk,
            [(codes[i : i + FOREST_BLOCK_ROWS],) for i in range(0, len(codes), FOREST_BLOCK_ROWS)],
        )

    def _walk(self, codes: np.ndarray) -> np.ndarray:
        """Sum of the leaf values over the trees for a block of rows. All (row, tree) pairs step
        down together; those that reached a leaf are dropped every few levels."""
        nodes, value, roots = self.arrays["nodes"], self.arrays["value"], self.arrays["roots"]
        count, width = codes.shape
        flat = codes.ravel()
        row = np.repeat(np.arange(count), len(roots))
        base = row * width
        node = np.tile(roots, count)
        total = np.zeros(count)
        for step in range(int(self.arrays["max_depth"][0])):
            if step >= 8 and step % 4 == 0:
                done = self._forest_leaf[node]
                total += np.bincount(row[done], weights=value[node[done]], minlength=count)
                keep = np.flatnonzero(~done)
                node, row, base = node[keep], row[keep], base[keep]
            packed = np.take(nodes, node)
            code = np.take(flat, base + (packed >> FOREST_FEATURE_SHIFT))
            node = (packed & FOREST_LEFT_MASK) + (
                code > (packed >> FOREST_CODE_BITS & FOREST_LEAF_CODE)
            )
        total += np.bincount(row, weights=np.take(value, node), minlength=count)
        return total

    @functools.cached_property
    def _forest_leaf(self) -> np.ndarray:
        return (self.arrays["nodes"] >> FOREST_CODE_BITS & FOREST_LEAF_CODE) == FOREST_LEAF_CODE

    def _oblivious(self, numeric: list[np.ndarray], features: Any) -> np.ndarray:
        """Split outcomes are laid out one row per split (splits x customers): gathering
        whole rows is what makes the per-tree leaf index cheap."""
        a = self.arrays
        n = len(numeric[0]) if numeric else len(features[self.categorical[0]])
        # CatBoost binarizes float32 features against its (float32) borders; a value
        # beyond float32's range becomes +-inf there as here (no warning: it is expected).
        with np.errstate(over="ignore"):
            floats = np.array(numeric, dtype=np.float32).reshape(len(numeric), n)
        nan = np.isnan(floats)

        def above(feature, border):
            return np.where(
                nan[feature], a["nan_true"][feature][..., None], floats[feature] > border[..., None]
            )

        kinds = a["split_kind"]
        bits = np.zeros(
            (len(kinds) + 1, n), dtype=np.uint8
        )  # the last row: a padding split, always 0
        bits[:-1][kinds == 0] = above(a["split_feature"][kinds == 0], a["border"][kinds == 0])
        if (kinds == 1).any():
            joint = np.zeros(n, dtype=np.int64)
            for name, categories in zip(self.categorical, self.meta["categories"]):
                # codes: the known values, then one code for every value the model never saw
                joint = joint * (len(categories) + 1) + _codes(
                    features[name], categories, len(categories)
                )
            cond = (
                above(a["cond_feature"], a["cond_border"]) & a["cond_used"][..., None]
            )  # (splits, width, n)
            combo = np.zeros((cond.shape[0], n), dtype=np.int64)
            for k in range(cond.shape[1]):
                combo |= cond[:, k].astype(np.int64) << k
            table = a["cat_table"]
            bits[:-1][kinds == 1] = table[np.arange(table.shape[0])[:, None], joint[None, :], combo]
        # tree_splits: (trees, depth) rows of ``bits``, padded with the always-0 row
        splits = a["tree_splits"]
        leaf = bits[splits[:, 0]].astype(np.int32)
        for d in range(1, splits.shape[1]):
            leaf |= bits[splits[:, d]].astype(np.int32) << d
        raw = a["leaf_values"][leaf + a["leaf_start"][:, None]].sum(axis=0)
        raw = a["scale"][0] * raw + a["bias"][0]
        return 1.0 / (1.0 + np.exp(-raw))
