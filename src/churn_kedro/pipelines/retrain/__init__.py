"""The daily retraining job: data_processing + data_science + model_promotion.

A folder of its own (not a sum in pipeline_registry.py) because Kedro imports only
the pipelines a run asks for.
"""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
