"""The reference profile of a registered version, ``versions/<v>/profile.json``, and the
champion's latest monitoring verdict, ``monitoring/latest.json`` in the registry.

The profile is what monitoring compares new data with (format in docs/architecture.md,
"Reference profile"): per feature the training distribution (bin counts for numerics,
value counts for categoricals, the missing rate) and the distribution of the model's
scores. It holds counts only, never a row. This module needs numpy, json and the
registry's fsspec filesystem only, so the serving image can read both files.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import numpy as np

PROFILE_FILE = "profile.json"
PROFILE_FORMAT = 1
MONITORING_FOLDER = "monitoring"
LATEST_VERDICT_FILE = "latest.json"


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """The distinct inner quantiles that cut ``values`` (no missing) into ``bins`` bins."""
    if not len(values):
        return []
    inner = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(e) for e in np.unique(inner)]


def bin_counts(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Counts in the bins ``(-inf, e1], (e1, e2], ..., (ek, inf)``: ``len(edges) + 1`` of them."""
    index = np.searchsorted(np.asarray(edges, dtype=float), values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def numeric_entry(values: np.ndarray, fine_bins: int, psi_bins: int) -> dict[str, Any]:
    """One numeric column: its missing rate, a fine grid (for the KS statistic: the CDF is
    exact at every edge, so a column with few distinct values has its whole CDF) and a
    coarse one (for the PSI)."""
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    fine, coarse = quantile_edges(present, fine_bins), quantile_edges(present, psi_bins)
    return {
        "kind": "numeric",
        "rows": int(len(values)),
        "missing_rate": float(1 - len(present) / len(values)) if len(values) else 0.0,
        "mean": float(present.mean()) if len(present) else None,
        "edges": fine,
        "counts": bin_counts(present, fine).tolist(),
        "psi_edges": coarse,
        "psi_counts": bin_counts(present, coarse).tolist(),
    }


def categorical_entry(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=object)
    missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values])
    names, counts = np.unique(values[~missing].astype(str), return_counts=True)
    return {
        "kind": "categorical",
        "rows": int(len(values)),
        "missing_rate": float(missing.mean()) if len(values) else 0.0,
        "counts": {str(n): int(c) for n, c in zip(names, counts)},
    }


def build_profile(
    numeric: dict[str, np.ndarray],
    categorical: dict[str, np.ndarray],
    scores: np.ndarray,
    threshold: float,
    fine_bins: int = 100,
    psi_bins: int = 10,
    **about: Any,
) -> dict[str, Any]:
    """The profile of training columns and of the model's scores; ``about`` goes in as
    is (version, source_file, where the scores come from, ...)."""
    scores = np.asarray(scores, dtype=float)
    score = numeric_entry(scores, fine_bins, psi_bins)
    score.update(
        threshold=float(threshold),
        positive_rate=float(np.mean(scores >= threshold)) if len(scores) else None,
    )
    return {
        "format": PROFILE_FORMAT,
        **about,
        "features": {
            **{name: numeric_entry(v, fine_bins, psi_bins) for name, v in numeric.items()},
            **{name: categorical_entry(v) for name, v in categorical.items()},
        },
        "score": score,
    }


def profile_bytes(profile: dict[str, Any]) -> bytes:
    return json.dumps(profile, separators=(",", ":")).encode()


def read_profile(data: bytes | str, where: str) -> dict[str, Any]:
    """A profile from its JSON text; ``where`` names the file in errors."""
    try:
        profile = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not a JSON profile ({exc})") from exc
    if not isinstance(profile, dict) or profile.get("format") != PROFILE_FORMAT:
        raise ValueError(
            f"{where}: unknown profile format {profile.get('format') if isinstance(profile, dict) else None!r}"
            f" (this code reads format {PROFILE_FORMAT})"
        )
    return profile


def load_profile(registry: Any, version: str) -> dict[str, Any] | None:
    """The profile of ``version`` in a :class:`~churn_kedro.registry.ModelRegistry`, or
    None for a version registered before profiles existed."""
    path = registry.version_path(version, PROFILE_FILE)
    if not registry.fs.exists(path):
        return None
    return read_profile(registry.fs.cat_file(path), registry.fs.unstrip_protocol(path))


def latest_verdict_path(registry: Any) -> str:
    return posixpath.join(registry.root, MONITORING_FOLDER, LATEST_VERDICT_FILE)


def write_latest_verdict(registry: Any, verdict: dict[str, Any]) -> None:
    path = latest_verdict_path(registry)
    registry.fs.makedirs(posixpath.dirname(path), exist_ok=True)
    registry.fs.pipe_file(path, json.dumps(verdict, indent=2, default=str).encode())


def read_latest_verdict(registry: Any, version: str | None = None) -> dict[str, Any] | None:
    """The latest monitoring verdict (``{"verdict", "at", "model_version", "reasons", ...}``),
    or None when there is none, or none about ``version`` (a newer champion is not yet
    monitored)."""
    path = latest_verdict_path(registry)
    if not registry.fs.exists(path):
        return None
    try:
        doc = json.loads(registry.fs.cat_file(path))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or (version is not None and doc.get("model_version") != version):
        return None
    return doc
