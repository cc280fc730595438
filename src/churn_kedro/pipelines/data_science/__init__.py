"""Tune each model family by cross-validation on the train split, pick the best by CV score."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
