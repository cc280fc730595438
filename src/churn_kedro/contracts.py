"""The typed objects that travel between nodes.

Each is a small dataclass, so a node's inputs and outputs say what they hold. Those
that carry a fitted model or large arrays (``Challenger``, the search results,
``HoldoutScores``) are declared ``copy_mode: assign`` in the catalog, so they are handed
to each consumer as they are instead of being deep-copied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SearchSummary:
    """What one family's hyperparameter search saw and spent (recorded in the card)."""

    rows: int  # rows the search cross-validated on
    train_rows: int  # rows of the train split (the challenger's refit uses them all)
    sampled: bool  # True when the search saw a stratified sample of the train split
    folds: int
    trials: int  # trials run (completed + pruned)
    trial_budget: int
    seconds: float
    time_cap_seconds: float | None
    time_cap_hit: bool  # the safety cap stopped the search before its trial budget

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    """One family's search: its best parameters by CV and what the search saw. No model
    is fitted on the whole train split here; only the chosen family is refitted.

    ``oof_probability`` are the best trial's out-of-fold probabilities on the rows the
    search saw, ``oof_target`` their labels: the decision threshold is chosen on them.
    """

    family: str
    params: dict[str, Any]
    cv_roc_auc: float
    cv_roc_auc_std: float
    search: SearchSummary
    oof_probability: np.ndarray
    oof_target: np.ndarray

    def summary(self) -> dict[str, Any]:
        """The family's line in the card and the evaluation report."""
        return {
            "cv_roc_auc": self.cv_roc_auc,
            "cv_roc_auc_std": self.cv_roc_auc_std,
            "params": self.params,
            "search": self.search.to_dict(),
        }


@dataclass(frozen=True)
class DisabledFamily:
    """A family switched off in parameters (``enabled: false``): not tuned, not compared."""

    family: str


@dataclass(frozen=True)
class ChallengerChoice:
    """The family chosen by CV, with its decision threshold (not yet refitted)."""

    result: SearchResult
    threshold: float
    threshold_policy: str

    @property
    def family(self) -> str:
        return self.result.family


@dataclass(frozen=True)
class RefitSummary:
    """What the challenger's refit used (recorded in the card)."""

    rows: int  # every row of the train split
    seconds: float
    params: dict[str, Any]  # the parameters fitted: the search's best

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Challenger:
    """The chosen family refitted on the whole train split, with its decision threshold."""

    result: SearchResult
    threshold: float
    threshold_policy: str
    model: Any
    refit: RefitSummary

    @property
    def family(self) -> str:
        return self.result.family


@dataclass(frozen=True)
class ScoredChampion:
    """The serving champion's probabilities on the holdout."""

    version: str
    probability: np.ndarray
    threshold: float


@dataclass(frozen=True)
class AbsentChampion:
    """No champion to compare with: none yet, or one that cannot be judged on this
    holdout (``reason`` says why)."""

    version: str | None
    reason: str


@dataclass(frozen=True)
class HoldoutScores:
    """The challenger and the champion, scored on the same holdout rows."""

    target: np.ndarray
    challenger: np.ndarray
    champion: ScoredChampion | AbsentChampion


@dataclass(frozen=True)
class Decision:
    """The promotion gate's verdict, with the numbers it was based on.

    The champion fields are None when the champion counts as absent.
    """

    challenger_family: str
    challenger: dict[str, Any]  # holdout metrics (metrics.holdout_metrics)
    champion_version: str | None
    champion: dict[str, Any] | None
    roc_auc_delta: float | None
    p_value: float | None
    brier_change: float | None
    promote: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VersionInfo:
    """The identity of the version a run registers."""

    version: str
    created_at: str
    code_version: str


@dataclass(frozen=True)
class RegistryEntry:
    """A new immutable registry version and the run's decision about it.

    Saving it to the ``model_registry`` dataset registers the version (model, card and
    the artefacts built from them), appends ``benchmarks`` and, only when ``promote``
    is true and the version is servable, moves ``champion.json`` to it.
    """

    version: str
    model: Any
    card: dict[str, Any]
    promote: bool
    reason: str
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # written beside the card (profile.json)


@dataclass(frozen=True)
class ScoreBatch:
    """One file scored by one model: saving it to the ``churn_scores`` dataset replaces
    what that model gave that file before, and the file's quarantine rows, at once."""

    source_file: str
    model_version: str
    scores: (
        pd.DataFrame
    )  # model_version, source_file, customer_id, churn_probability, churn, scored_at
    rejected: pd.DataFrame  # row_number, reason, record
