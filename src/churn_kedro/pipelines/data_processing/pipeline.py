from kedro.pipeline import Node, Pipeline

from .nodes import select_latest_snapshot, split_train_holdout, validate_snapshot


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                select_latest_snapshot,
                inputs=["raw_objects", "params:snapshot_pattern"],
                outputs=["raw_snapshot", "snapshot_info"],
                name="select_latest_snapshot",
            ),
            Node(
                validate_snapshot,
                inputs=["raw_snapshot", "snapshot_info", "params:schema", "params:data_processing"],
                outputs=["clean_rows", "raw_quarantine", "validation_report"],
                name="validate_snapshot",
            ),
            Node(
                split_train_holdout,
                inputs=[
                    "clean_rows",
                    "snapshot_info",
                    "validation_report",
                    "params:schema",
                    "params:data_processing",
                ],
                outputs=["train_set", "holdout_set", "processed_snapshot"],
                name="split_train_holdout",
            ),
        ]
    )
