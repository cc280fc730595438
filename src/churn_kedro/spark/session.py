"""The SparkSession (Kedro's PySpark pattern): created once per run by an
``after_context_created`` hook from the environment's ``spark.yml``. Environments
without a ``spark.yml`` (base, aws, telco) never import pyspark.

On Glue (``--env aws_spark`` in a Glue Spark job) ``getOrCreate`` returns the job's own
session: the settings that only a new JVM can take (master, memory, workers, the JDBC
driver jar of the job's ``--extra-jars``) are Glue's; the SQL settings of ``spark.yml`` apply.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class SparkHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        try:
            settings = context.config_loader["spark"]
        except MissingConfigException:  # base, aws, telco: the pandas engine
            return
        if settings:
            session(settings, app_name=f"churn-kedro ({context.env})")


def session(settings: dict[str, Any] | None = None, app_name: str = "churn-kedro"):
    """The active SparkSession, created from ``settings`` (Spark properties) if none is."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ImportError(
            "this environment runs on Spark, but pyspark is not installed: "
            'pip install -e ".[spark]" (or -r requirements-spark.txt)'
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:  # Glue's, or a test's: it takes the settings it still can
        for key, value in (settings or {}).items():
            if active.conf.isModifiable(key):
                active.conf.set(key, str(value))
        return active
    # The Python workers must run the driver's interpreter (its packages, its version).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in (settings or {}).items():
        builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    logger.info(
        "Spark %s session: master %s, %s shuffle partitions",
        spark.version,
        spark.sparkContext.master,
        spark.conf.get("spark.sql.shuffle.partitions"),
    )
    return spark
