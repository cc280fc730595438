from kedro.pipeline import Node, Pipeline

from churn_kedro.pipelines.monitor.nodes import attach_reference_profile

from .nodes import (
    benchmark_rows,
    decide_promotion,
    evaluate_models,
    model_card,
    name_version,
    registry_entry,
    score_holdout,
)
from .report import plot_evaluation


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                score_holdout,
                inputs=[
                    "challenger",
                    "champion_model",
                    "holdout_set",
                    "params:schema",
                    "params:data_processing",
                ],
                outputs="holdout_scores",
                name="score_holdout",
            ),
            Node(
                decide_promotion,
                inputs=["holdout_scores", "challenger", "params:model_promotion"],
                outputs="promotion_decision",
                name="decide_promotion",
            ),
            Node(
                evaluate_models,
                inputs=["holdout_scores", "challenger", "params:model_promotion"],
                outputs="holdout_evaluation",
                name="evaluate_models",
            ),
            Node(name_version, inputs="challenger", outputs="version_info", name="name_version"),
            Node(
                model_card,
                inputs=[
                    "version_info",
                    "challenger",
                    "model_candidates",
                    "promotion_decision",
                    "snapshot_info",
                    "train_set",
                    "holdout_set",
                    "params:schema",
                    "params:data_processing",
                ],
                outputs="model_card",
                name="model_card",
            ),
            Node(
                benchmark_rows,
                inputs=[
                    "version_info",
                    "model_candidates",
                    "promotion_decision",
                    "holdout_evaluation",
                    "snapshot_info",
                ],
                outputs="benchmark_rows",
                name="benchmark_rows",
            ),
            Node(
                registry_entry,
                inputs=[
                    "version_info",
                    "challenger",
                    "model_card",
                    "promotion_decision",
                    "benchmark_rows",
                ],
                outputs="registry_entry_without_profile",
                name="registry_entry",
            ),
            # Saving the entry registers the version (with its reference profile) and, when
            # the gate passed, promotes it.
            Node(
                attach_reference_profile,
                inputs=[
                    "registry_entry_without_profile",
                    "train_set",
                    "holdout_scores",
                    "params:schema",
                    "params:monitor",
                ],
                outputs="model_registry",
                name="register_version_and_promote_if_passed",
            ),
            Node(
                plot_evaluation,
                inputs=[
                    "holdout_scores",
                    "promotion_decision",
                    "holdout_evaluation",
                    "model_candidates",
                    "params:model_promotion",
                ],
                outputs=[
                    "roc_plot",
                    "pr_plot",
                    "calibration_plot",
                    "gains_plot",
                    "evaluation_metrics",
                ],
                name="plot_evaluation",
            ),
        ]
    )
