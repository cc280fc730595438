"""Project hooks (registered in settings.py).

:class:`MlflowTracking` makes every ``retrain`` an MLflow run when the parameter
``tracking.mlflow.enabled`` is true (off by default; conf/base/parameters.yml). The
model registry stays the source of truth for serving: MLflow only records what each run
tried and decided, for the people comparing runs.

Why a hook of our own rather than the kedro-mlflow plugin: once installed, the plugin's
hooks are on for every run of every environment, and it brings the whole MLflow server
into the job's install; this project needs only the tracking client (``mlflow-skinny``,
imported only when tracking is on) and a handful of well-defined things to log.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

# node outputs the run is built from (the model_promotion pipeline's datasets)
_RECORDED = ("version_info", "model_card", "promotion_decision", "benchmark_rows")
_FIGURES = ("roc_plot", "pr_plot", "calibration_plot", "gains_plot")
_METRICS = (
    "cv_roc_auc",
    "holdout_roc_auc",
    "holdout_log_loss",
    "holdout_brier",
    "holdout_calibration_error",
    "holdout_average_precision",
)


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class MlflowTracking:
    def __init__(self) -> None:
        self._settings: dict[str, Any] | None = None
        self._params: dict[str, Any] = {}
        self._outputs: dict[str, Any] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        settings = ((context.params.get("tracking") or {}).get("mlflow")) or {}
        enabled = str(settings.get("enabled")).lower() in ("true", "1", "yes")  # env: text
        self._settings = settings if enabled else None
        self._params = context.params
        self._outputs = {}

    @hook_impl
    def after_node_run(self, node, outputs: dict[str, Any]) -> None:
        if self._settings is not None:
            for name in (*_RECORDED, *_FIGURES):
                if name in outputs:
                    self._outputs[name] = outputs[name]

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if self._settings is None or "model_card" not in self._outputs:
            return  # tracking off, or a run that registered no version
        import mlflow  # only when tracking is on

        outputs, settings = self._outputs, self._settings
        mlflow.set_tracking_uri(settings["tracking_uri"])
        mlflow.set_experiment(settings.get("experiment", "churn-retrain"))
        version = outputs["version_info"].version
        decision = outputs["promotion_decision"]
        with mlflow.start_run(run_name=version) as run:
            mlflow.set_tags(
                {
                    "registry_version": version,
                    "kedro_env": run_params.get("env") or "local",
                    "decision": "promoted" if decision.promote else "rejected",
                    "challenger_family": decision.challenger_family,
                }
            )
            mlflow.log_params(
                {
                    k: str(v)[:500]  # MLflow's limit for a parameter value
                    for k, v in _flatten(
                        {key: self._params.get(key) for key in ("data_science", "model_promotion")}
                    ).items()
                }
            )
            for row in outputs.get("benchmark_rows", []):
                mlflow.log_metrics(
                    {
                        f"{row['model']}.{metric}": float(row[metric])
                        for metric in _METRICS
                        if row.get(metric) == row.get(metric)  # NaN: not measured (champion CV)
                    }
                )
            mlflow.log_text(decision.reason, "decision.txt")
            mlflow.log_dict(outputs["model_card"], "model_card.json")
            for name in _FIGURES:
                if name in outputs:
                    mlflow.log_figure(outputs[name], f"{name.removesuffix('_plot')}.png")
        logger.info(
            "MLflow run %s (%s) for version %s", run.info.run_id, settings["tracking_uri"], version
        )
