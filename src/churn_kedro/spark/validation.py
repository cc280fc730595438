"""A snapshot on Spark: read as text, numbered as the pandas reader numbers it, and
validated by the one rule set (:func:`churn_kedro.schema.validate_frame`) applied to
each partition with ``mapInPandas``. Only the duplicate rule needs the whole file: it is
judged here with two windows (rows by content, ids by distinct rows), and the reasons are
worded by :mod:`churn_kedro.duplicates`, as on the pandas path.

The result is one DataFrame: the typed columns, ``row_number`` (data row in the file,
from 1), and ``reason``/``record`` (null on a valid row).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pandas._libs.parsers import STR_NA_VALUES
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from churn_kedro.duplicates import conflict_reasons, repeat_reasons
from churn_kedro.ingestion.objects import reject_binary
from churn_kedro.ingestion.store import Chunk
from churn_kedro.schema import (
    REASON,
    RECORD,
    ROW_NUMBER,
    Schema,
    SnapshotError,
    ValidationResult,
    check_columns,
    describe_read_error,
    validate_frame,
)

if TYPE_CHECKING:
    from churn_kedro.datasets.snapshot_objects_dataset import SnapshotObject

ROW = "__row"  # the data row number in a raw frame (the header is not a row)
_CORRUPT, _BLOCK, _POS = "__corrupt", "__block", "__pos"
_FIRST, _ID, _DUPLICATE_OF, _CONFLICT = "__first", "__id", "__duplicate_of", "__conflict"
_LINE_BREAK = re.compile(r"[\r\n]")
# The words pandas.read_csv reads as a missing cell (the pandas path's reader)
NA_TEXTS = sorted(STR_NA_VALUES)


def spark_path(obj: SnapshotObject) -> str:
    return obj.uri if "://" in obj.uri else "file://" + obj.uri


def header(obj: SnapshotObject) -> list[str]:
    """The file's column names as written; a file that is binary, empty or not a CSV
    fails here, named, as on the pandas path."""
    reject_binary(obj)
    try:
        names = pd.read_csv(io.BytesIO(obj.head(1 << 16)), nrows=0, dtype=str).columns
    except Exception as exc:
        raise SnapshotError(obj.uri, describe_read_error(exc)) from exc
    return [str(c) for c in names]


def read_snapshot(spark: SparkSession, obj: SnapshotObject) -> tuple[DataFrame, int]:
    """The file's cells as text (pandas' missing words as null) with ``__row``, and its
    number of data rows. Rows are numbered in file order: each block of the file (one
    split) is counted once, then a row's number is its block's offset plus its position
    in the block.

    A file that holds a double quote is read with ``multiLine``: a quoted cell may span
    lines, so a split could start inside a record, and Spark reads the file as one block,
    parsed (and written to the duplicate windows' shuffle) by one task. A file without a
    quote has one record a line: it is read in splits, by as many tasks as the cores
    (:func:`holds_a_quote`, a parallel pass over its lines, tells which)."""
    written = header(obj)
    # Spark compares the header with the field names (and only warns): the file's names
    # when they are distinct, positions otherwise
    fields = (
        written if len(set(written)) == len(written) else [f"_c{i}" for i in range(len(written))]
    )
    frame = spark.read.csv(
        spark_path(obj),
        schema=T.StructType(
            [
                *(T.StructField(f, T.StringType()) for f in fields),
                T.StructField(_CORRUPT, T.StringType()),
            ]
        ),
        header=True,
        escape='"',  # a quote inside a quoted cell is doubled, as pandas reads it
        # a quoted cell may hold line breaks, as pandas reads it: a row is a record, not a
        # line. The cost: the file is not split, one task parses it (see the docstring)
        multiLine=holds_a_quote(spark, obj),
        mode="PERMISSIVE",
        columnNameOfCorruptRecord=_CORRUPT,
        encoding="UTF-8",
    )
    names = [n.strip() for n in written]
    cells = []
    for i, name in enumerate(names):
        if name not in names[:i]:  # pandas renames a repeated column a.1; the first one counts
            cell = frame[i]
            cells.append(F.when(cell.isin(NA_TEXTS), F.lit(None)).otherwise(cell).alias(name))
    # a row with more cells than the header: the pandas reader refuses the file
    too_many = frame[_CORRUPT].isNotNull() & frame[len(names) - 1].isNotNull()
    frame = frame.select(
        *cells,
        too_many.alias(_CORRUPT),
        F.col("_metadata.file_block_start").alias(_BLOCK),
        F.monotonically_increasing_id().alias(_POS),
    )
    blocks = (
        frame.groupBy(_BLOCK)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.min(_POS).alias("first"),
            F.min(F.when(F.col(_CORRUPT), F.col(_POS))).alias("bad"),
            F.max_by(F.concat_ws("", *seen_names(names)), _POS).alias("last"),
        )
        .orderBy(_BLOCK)
        .collect()
    )
    offsets, total = [], 0
    for block in blocks:
        if block["bad"] is not None:
            row = total + block["bad"] - block["first"] + 1
            raise SnapshotError(
                obj.uri,
                f"not a well-formed CSV: data row {row} has more fields than the "
                f"header's {len(names)}",
            )
        offsets.append((block[_BLOCK], block["first"], total))
        total += block["rows"]
    if blocks and _LINE_BREAK.search(blocks[-1]["last"] or ""):
        check_quotes_closed(obj)
    if not offsets:
        return frame.select(*seen_names(names), F.lit(0).cast("long").alias(ROW)), 0
    starts = spark.createDataFrame(offsets, f"{_BLOCK} long, first long, offset long")
    numbered = frame.join(F.broadcast(starts), _BLOCK).select(
        *seen_names(names), (F.col(_POS) - F.col("first") + F.col("offset") + 1).alias(ROW)
    )
    return numbered, total


def holds_a_quote(spark: SparkSession, obj: SnapshotObject) -> bool:
    """Whether any line of the file holds a double quote: only then can a record span
    lines. Read as text in splits (in parallel), stopping at the first quote found."""
    lines = spark.read.text(spark_path(obj))
    return bool(lines.filter(F.col("value").contains('"')).limit(1).count())


def check_quotes_closed(obj: SnapshotObject) -> None:
    """The file's last record holds a line break: maybe a quoted cell that is never
    closed, which the Spark reader runs to the end of the file (swallowing the rows
    after it) where pandas refuses the file. pandas' tokenizer, reading the file on the
    driver, says which; rare (a last record with a line break in a cell), so its cost is."""
    try:
        with obj.fs.open(obj.path, "rb") as stream:
            for _ in pd.read_csv(
                stream, **{"encoding": "utf-8", **obj.load_args}, dtype=str, chunksize=1 << 18
            ):
                pass
    except Exception as exc:
        raise SnapshotError(obj.uri, describe_read_error(exc)) from exc


def seen_names(names: list[str]) -> list[Any]:
    return [F.col(f"`{n}`") for n in dict.fromkeys(names)]


def _typed_schema(schema: Schema, labelled: bool) -> T.StructType:
    return T.StructType(
        [
            T.StructField(schema.id_column, T.StringType()),
            *(T.StructField(n, T.DoubleType()) for n in schema.numeric_features),
            *(T.StructField(n, T.StringType()) for n in schema.categorical_features),
            *([T.StructField(schema.target, T.LongType())] if labelled else []),
            T.StructField(ROW_NUMBER, T.LongType()),
            T.StructField(REASON, T.StringType()),
            T.StructField(RECORD, T.StringType()),
        ]
    )


def validate(raw: DataFrame, schema: Schema, source: str, labelled: bool = True) -> DataFrame:
    """Typed rows with ``row_number``, ``reason`` and ``record`` (null on valid rows)."""
    check_columns([c for c in raw.columns if c != ROW], schema, source, labelled)
    required = schema.required_columns(labelled)
    cells = [F.col(f"`{c}`") for c in required]
    by_content = Window.partitionBy(*cells)
    frame = raw.select(*cells, ROW).withColumn(_FIRST, F.min(ROW).over(by_content))
    distinct = F.col(ROW) == F.col(_FIRST)
    stripped = F.regexp_replace(F.col(f"`{schema.id_column}`"), r"(?U)^\s+|\s+$", "")
    frame = frame.withColumn(_ID, F.when(stripped != "", stripped))
    distinct_rows_of_id = F.sum(distinct.cast("int")).over(Window.partitionBy(_ID))
    frame = frame.select(
        *cells,
        ROW,
        F.when(~distinct, F.col(_FIRST)).alias(_DUPLICATE_OF),
        (distinct & F.col(_ID).isNotNull() & (distinct_rows_of_id > 1)).alias(_CONFLICT),
    )
    output = _typed_schema(schema, labelled)
    strings = [f.name for f in output.fields if isinstance(f.dataType, T.StringType)]

    def batches(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in frames:
            if len(batch):
                yield _validate_batch(batch, schema, source, labelled, required, strings)

    return frame.mapInPandas(batches, output)


def _validate_batch(
    batch: pd.DataFrame,
    schema: Schema,
    source: str,
    labelled: bool,
    required: list[str],
    strings: list[str],
) -> pd.DataFrame:
    raw = batch[required].reset_index(drop=True)
    numbers = batch[ROW].to_numpy(dtype="int64")
    duplicate_of = batch[_DUPLICATE_OF].reset_index(drop=True)
    conflict = batch[_CONFLICT].to_numpy(dtype=bool)

    def duplicates(raw: pd.DataFrame, ids: pd.Series, first_row_number: int) -> pd.Series:
        reasons = pd.Series(index=raw.index, dtype=object)
        repeats = duplicate_of.notna().to_numpy()
        if repeats.any():
            reasons[repeats] = repeat_reasons(duplicate_of[repeats].astype("int64").to_numpy())
        if conflict.any():
            reasons[conflict] = conflict_reasons(schema.id_column, ids[conflict])
        return reasons.dropna()

    result = validate_frame(
        raw, schema, source, labelled, first_row_number=0, duplicates=duplicates
    )
    bad = result.rejected[ROW_NUMBER].to_numpy(dtype="int64")  # positions in the batch
    keep = np.ones(len(raw), dtype=bool)
    keep[bad] = False
    out = pd.concat(
        [
            result.valid.assign(**{ROW_NUMBER: numbers[keep]}),
            result.rejected.assign(**{ROW_NUMBER: numbers[bad]}),
        ],
        ignore_index=True,
    )
    # Object columns with None: pyspark 3.5's Arrow conversion refuses pandas 3's str columns
    for name in strings:
        column = out[name] if name in out else pd.Series(None, index=out.index)
        out[name] = column.astype(object).where(column.notna(), None)
    if labelled:
        out[schema.target] = out[schema.target].astype("Int64")
    return out[[*_typed_columns(schema, labelled), ROW_NUMBER, REASON, RECORD]]


def _typed_columns(schema: Schema, labelled: bool) -> list[str]:
    return [schema.id_column, *schema.features, *([schema.target] if labelled else [])]


class SparkValidation:
    """An object validated on Spark, as the ingestion store takes it: iterable as
    :class:`~churn_kedro.ingestion.store.Chunk` s (the rows come to the driver a
    partition at a time: the SQLite path), or written from the executors by a store
    that can (:class:`churn_kedro.spark.store.SparkIngestionDatabase`: JDBC staging)."""

    def __init__(self, frame: DataFrame, schema: Schema, chunk_rows: int, rows_read: int):
        self.frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        self.schema = schema
        self.chunk_rows = chunk_rows
        self.rows_read = rows_read
        self.columns = [*_typed_columns(schema, True), ROW_NUMBER]

    def valid(self) -> DataFrame:
        return self.frame.filter(F.col(REASON).isNull()).select(*self.columns)

    def rejected(self) -> DataFrame:
        return self.frame.filter(F.col(REASON).isNotNull()).select(ROW_NUMBER, REASON, RECORD)

    def counts(self) -> tuple[int, int]:
        """(valid rows, rejected rows)."""
        row = self.frame.agg(
            F.count(F.when(F.col(REASON).isNull(), 1)).alias("valid"),
            F.count(F.col(REASON)).alias("rejected"),
        ).first()
        return int(row["valid"]), int(row["rejected"])

    def top_reasons(self, most: int = 5) -> list[tuple[str, int]]:
        each = F.explode(F.split(F.col(REASON), "; ")).alias("broken")
        rows = (
            self.rejected()
            .select(each)
            .groupBy("broken")
            .count()
            .orderBy(F.desc("count"), "broken")
            .limit(most)
            .collect()
        )
        return [(r["broken"], int(r["count"])) for r in rows]

    def __iter__(self) -> Iterator[Chunk]:
        rows: list[Any] = []
        for row in self.frame.toLocalIterator(prefetchPartitions=True):
            rows.append(row)
            if len(rows) >= self.chunk_rows:
                yield self._chunk(rows)
                rows = []
        if rows:
            yield self._chunk(rows)

    def _chunk(self, rows: list[Any]) -> Chunk:
        frame = pd.DataFrame.from_records(rows, columns=self.frame.columns)
        bad = frame[REASON].notna()
        valid = frame.loc[~bad, self.columns].reset_index(drop=True)
        return Chunk(
            valid=valid.astype({self.schema.target: "int64"}),
            rejected=frame.loc[bad, [ROW_NUMBER, REASON, RECORD]].reset_index(drop=True),
        )

    def release(self) -> None:
        self.frame.unpersist()


def validated_to_score(
    raw: DataFrame, schema: Schema, source_file: str
) -> tuple[DataFrame, pd.DataFrame]:
    """A label-less snapshot: its valid typed rows (Spark) and its rejected rows (to the
    driver: row_number, reason, record), as the score pipeline's pandas path returns them."""
    frame = validate(raw, schema, source_file, labelled=False).persist(StorageLevel.MEMORY_AND_DISK)
    valid = frame.filter(F.col(REASON).isNull()).select(*_typed_columns(schema, False))
    rejected = frame.filter(F.col(REASON).isNotNull()).select(ROW_NUMBER, REASON, RECORD).toPandas()
    return valid, rejected.astype({ROW_NUMBER: "int64"})


def validated_for_training(
    raw: DataFrame, schema: Schema, source: str, limit: int
) -> tuple[ValidationResult, int, dict[str, Any]]:
    """A labelled snapshot validated on Spark, as ``validate_frame`` returns it: the
    valid rows in file order (so the split and the processed snapshot are the pandas
    path's), at most ``limit`` of them (a sample stratified by the target above it),
    and the rejected rows. Also the rows read and how many valid rows were used."""
    frame = validate(raw, schema, source).persist(StorageLevel.MEMORY_AND_DISK)
    rejected = frame.filter(F.col(REASON).isNotNull()).select(ROW_NUMBER, REASON, RECORD)
    valid = frame.filter(F.col(REASON).isNull())
    per_class = {
        r[schema.target]: r["count"] for r in valid.groupBy(schema.target).count().collect()
    }
    rows_valid = sum(per_class.values())
    rows_read = rows_valid + rejected.count()
    if not rows_read:
        raise SnapshotError(source, "has no data rows")
    used = {"rows_valid_total": rows_valid, "rows_used": min(rows_valid, limit), "sampled": False}
    if rows_valid > limit:
        fraction = limit / rows_valid
        valid = valid.sampleBy(schema.target, {c: fraction for c in per_class}, seed=42)
        used.update(sampled=True, rows_used=valid.count())
    rows = valid.orderBy(ROW_NUMBER).select(*_typed_columns(schema, True)).toPandas()
    bad = rejected.orderBy(ROW_NUMBER).toPandas().astype({ROW_NUMBER: "int64"})
    frame.unpersist()
    return (
        ValidationResult(valid=rows.astype({schema.target: "int64"}), rejected=bad),
        rows_read,
        used,
    )
