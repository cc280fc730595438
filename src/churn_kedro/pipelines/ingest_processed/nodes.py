"""Nodes of ingest_processed: processed snapshots -> ``policies_processed``, exactly once
per object (the run itself is :mod:`churn_kedro.ingestion.run`, shared with ingest_raw)."""

from __future__ import annotations

from typing import Any

from churn_kedro.ingestion.run import ingest_objects
from churn_kedro.schema import Schema


def ingest_processed_objects(objects, database, schema_params, params, force) -> dict[str, Any]:
    """Processed snapshots -> policies_processed (target 0/1, plus the split column)."""
    schema = Schema.from_params(schema_params)
    return ingest_objects(
        objects, database, schema, schema.processed(), "policies_processed", params, force
    )
