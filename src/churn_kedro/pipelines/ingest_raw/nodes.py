"""Nodes of ingest_raw: raw snapshots -> ``policies_raw``, exactly once per object
(the run itself is :mod:`churn_kedro.ingestion.run`, shared with ingest_processed)."""

from __future__ import annotations

from typing import Any

from churn_kedro.ingestion.run import ingest_objects
from churn_kedro.schema import Schema


def ingest_raw_objects(objects, database, schema_params, params, force) -> dict[str, Any]:
    """Raw snapshots -> policies_raw (rows as the contract types them)."""
    schema = Schema.from_params(schema_params)
    return ingest_objects(objects, database, schema, schema, "policies_raw", params, force)
