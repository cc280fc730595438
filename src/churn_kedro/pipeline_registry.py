"""Project pipelines (DESIGN §5)."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Each folder under pipelines/ is a pipeline; `retrain` is the daily job and the default."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["retrain"] = (
        pipelines["data_processing"] + pipelines["data_science"] + pipelines["model_promotion"]
    )
    pipelines["__default__"] = pipelines["retrain"]
    return pipelines
