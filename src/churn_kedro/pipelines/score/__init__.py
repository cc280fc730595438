"""Batch scoring (DESIGN §5): a snapshot without labels -> the champion -> churn_scores."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
