"""Nodes of ingest_processed: the ingest_raw nodes with the processed snapshot's rules."""

from __future__ import annotations

from typing import Any

from churn_kedro.pipelines.ingest_raw.nodes import ingest_objects, processed_schema
from churn_kedro.schema import Schema


def ingest_processed_objects(objects, database, schema_params, params, force) -> dict[str, Any]:
    """Processed snapshots -> policies_processed (target 0/1, plus the split column)."""
    schema = Schema.from_params(schema_params)
    return ingest_objects(
        objects, database, schema, processed_schema(schema), "policies_processed", params, force
    )
