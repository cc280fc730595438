"""The typed objects that travel between nodes.

Each is a small dataclass, so a node's inputs and outputs say what they hold. Those
that carry a fitted model are declared ``copy_mode: assign`` in the catalog, so a
model is handed to each consumer as it is instead of being deep-copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
