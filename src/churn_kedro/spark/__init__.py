"""The Spark engine (see docs/architecture.md: engines): the same pipelines, rules and
tables on Spark, chosen by the environment (``--env spark``, ``--env aws_spark``).

- :mod:`~churn_kedro.spark.session`: the SparkSession, created by a hook from ``spark.yml``
- :mod:`~churn_kedro.spark.validation`: a snapshot read, numbered and validated on Spark
  with the pandas rules (``schema.validate_frame``) applied to each partition
- :mod:`~churn_kedro.spark.store`: the ingestion store over JDBC staging tables
- :mod:`~churn_kedro.spark.scoring`: ``churn_kedro.inference.predict`` over partitions

Nothing here is imported by the pandas path: pyspark is an extra (``.[spark]``).
"""

from __future__ import annotations

from typing import Any


def is_spark_frame(value: Any) -> bool:
    """Whether ``value`` is a Spark DataFrame, without importing pyspark."""
    return type(value).__module__.startswith("pyspark.sql")
