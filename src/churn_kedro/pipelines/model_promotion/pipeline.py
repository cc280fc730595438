from kedro.pipeline import Node, Pipeline

from churn_kedro.pipelines.monitor.nodes import attach_reference_profile

from .nodes import build_registry_entry, decide_promotion, score_holdout
from .report import plot_evaluation


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                score_holdout,
                inputs=[
                    "model_candidates",
                    "challenger",
                    "champion_model",
                    "holdout_set",
                    "params:schema",
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
                build_registry_entry,
                inputs=[
                    "challenger",
                    "model_candidates",
                    "promotion_decision",
                    "holdout_scores",
                    "snapshot_info",
                    "train_set",
                    "holdout_set",
                    "params:schema",
                    "params:model_promotion",
                ],
                outputs="registry_entry_without_profile",
                name="register_challenger",
            ),
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
                name="attach_reference_profile",
            ),
            Node(
                plot_evaluation,
                inputs=["holdout_scores", "promotion_decision", "params:model_promotion"],
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
