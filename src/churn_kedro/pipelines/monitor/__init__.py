"""The monitor pipeline: data drift, prediction drift and realized performance of the
champion, and a verdict (docs/architecture.md, "Monitoring")."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
