"""Challenger vs champion on the same holdout -> gate -> register, maybe promote -> report."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
