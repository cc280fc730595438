"""ingest_processed: processed snapshots -> policies_processed, exactly once per object."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
