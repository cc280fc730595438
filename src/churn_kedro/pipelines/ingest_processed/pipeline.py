from kedro.pipeline import Node, Pipeline

from churn_kedro.ingestion.run import raise_on_ingestion_errors

from .nodes import ingest_processed_objects


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ingest_processed_objects,
                inputs=[
                    "processed_objects",
                    "ingestion_database",
                    "params:schema",
                    "params:ingestion",
                    "params:force",
                ],
                outputs="processed_ingestion_report",
                name="ingest_processed_objects",
            ),
            Node(
                raise_on_ingestion_errors,
                inputs="processed_ingestion_report",
                outputs=None,
                name="check_processed_ingestion",
            ),
        ]
    )
