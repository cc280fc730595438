"""The typed objects that travel between nodes.

Each is a small dataclass, so a node's inputs and outputs say what they hold. Those
that carry a fitted model are declared ``copy_mode: assign`` in the catalog, so a
model is handed to each consumer as it is instead of being deep-copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


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
