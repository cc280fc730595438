from kedro.pipeline import Node, Pipeline

from churn_kedro.ingestion.run import raise_on_ingestion_errors

from .nodes import ingest_raw_objects


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ingest_raw_objects,
                inputs=[
                    "raw_objects",
                    "ingestion_database",
                    "params:schema",
                    "params:ingestion",
                    "params:force",
                ],
                outputs="raw_ingestion_report",
                name="ingest_raw_objects",
            ),
            Node(
                raise_on_ingestion_errors,
                inputs="raw_ingestion_report",
                outputs=None,
                name="check_raw_ingestion",
            ),
        ]
    )
