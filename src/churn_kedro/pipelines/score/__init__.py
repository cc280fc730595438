"""Batch scoring (see docs/architecture.md: pipelines): a snapshot without labels -> the champion -> churn_scores."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
