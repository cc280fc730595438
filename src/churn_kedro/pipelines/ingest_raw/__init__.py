"""ingest_raw: raw snapshots -> policies_raw, exactly once per object (see docs/architecture.md: storage, pipelines)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
