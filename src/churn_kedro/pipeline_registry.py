"""Project pipelines (see docs/architecture.md: pipelines): each folder under pipelines/ is one, named after it."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro imports only the pipelines a run asks for, so `retrain` may be absent here.
    pipelines = find_pipelines(raise_errors=True)
    if "retrain" in pipelines:
        pipelines["__default__"] = pipelines["retrain"]
    return pipelines
