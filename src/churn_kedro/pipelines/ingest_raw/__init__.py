"""ingest_raw: raw snapshots -> policies_raw, exactly once per object (DESIGN §4-5)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
