from kedro.pipeline import Node, Pipeline

from .nodes import score_customers, select_snapshot_to_score, validate_snapshot_to_score


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                select_snapshot_to_score,
                inputs=["objects_to_score", "params:snapshot_pattern", "params:score"],
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
                    "rejected_to_score",
                    "serving_champion",
                    "snapshot_to_score_source",
                    "params:schema",
                ],
                outputs=["churn_scores", "score_report"],
                name="score_customers",
            ),
        ]
    )
