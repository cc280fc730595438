"""Batch scoring on Spark: the one inference function
(:func:`churn_kedro.inference.predict`) and the champion's serving form, over each
partition with ``mapInPandas``; the scores equal the pandas path's and the API's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from churn_kedro.inference import on_one_thread, predict

SCORES = "customer_id string, churn_probability double, churn boolean"


def score_frame(
    valid: DataFrame,
    champion: dict[str, Any],
    id_column: str,
    source_file: str,
    scored_at: datetime,
) -> tuple[DataFrame, dict[str, Any]]:
    """The ``churn_scores`` rows of ``valid`` (persisted: the summary and the save read
    them once) and their summary (rows scored, predicted churners, mean probability)."""
    features = list(champion["card"]["features"])
    version = str(champion["version"])

    def batches(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in frames:
            # categories as text or None, as the API hands them over
            columns = {
                name: batch[name].astype(object).where(batch[name].notna(), None)
                if batch[name].dtype == object or pd.api.types.is_string_dtype(batch[name])
                else batch[name]
                for name in features
            }
            # Spark runs a Python worker a core: each scores its partition on one thread
            with on_one_thread():
                result = predict(champion, pd.DataFrame(columns))
            yield pd.DataFrame(
                {
                    "customer_id": batch[id_column].astype(str).astype(object),
                    "churn_probability": result.probability,
                    "churn": result.label,
                }
            )

    # Scoring is CPU-bound: at least a partition a core, whatever the file's splits or
    # adaptive execution left (a one-split file scored on one core of many otherwise).
    cores = valid.sparkSession.sparkContext.defaultParallelism
    if valid.rdd.getNumPartitions() < cores:
        valid = valid.repartition(cores)
    scores = (
        valid.select(id_column, *features)
        .mapInPandas(batches, SCORES)
        .select(
            F.lit(version).alias("model_version"),
            F.lit(source_file).alias("source_file"),
            "customer_id",
            "churn_probability",
            "churn",
            F.lit(scored_at).cast("timestamp").alias("scored_at"),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    row = scores.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col("churn").cast("long")).alias("churners"),
        F.avg("churn_probability").alias("mean"),
    ).first()
    summary = {
        "rows_scored": int(row["rows"]),
        "predicted_churners": int(row["churners"] or 0),
        "mean_probability": None if row["mean"] is None else float(row["mean"]),
    }
    return scores, summary
