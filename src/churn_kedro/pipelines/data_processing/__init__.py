"""Latest raw snapshot -> validated, deduplicated rows -> stratified train/holdout split."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
