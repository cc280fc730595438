from kedro.pipeline import Node, Pipeline

from .nodes import (
    score_customers,
    select_snapshot_to_score,
    validate_snapshot_to_score,
    write_scores,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                select_snapshot_to_score,
                inputs=["snapshots_to_score", "params:snapshot_pattern", "params:score"],
                outputs=["snapshot_to_score", "snapshot_to_score_source"],
                name="select_snapshot_to_score",
            ),
            Node(
                validate_snapshot_to_score,
                inputs=["snapshot_to_score", "snapshot_to_score_source", "params:schema"],
                outputs=["customers_to_score", "rejected_to_score"],
                name="validate_snapshot_to_score",
            ),
            Node(
                score_customers,
                inputs=[
                    "customers_to_score",
                    "champion_model",
                    "snapshot_to_score_source",
                    "params:schema",
                ],
                outputs="customer_scores",
                name="score_customers",
            ),
            Node(
                write_scores,
                inputs=[
                    "scores_database",
                    "customer_scores",
                    "rejected_to_score",
                    "snapshot_to_score_source",
                    "params:schema",
                ],
                outputs="score_report",
                name="write_scores",
            ),
        ]
    )
