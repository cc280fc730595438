"""The data contract (see docs/architecture.md: data contract), built from the ``schema`` parameters.

This is the one definition of the rules. ``data_processing`` and both ingestion
pipelines validate with :func:`validate_frame`; the model card carries
:meth:`Schema.to_dict` so that serving checks requests against the same rules.

Why not pandera: we need, for every rejected row, one readable reason that
names each broken field, in a single vectorised pass over million-row chunks,
and the same rules in the slim serving image. A dozen pandas masks do that in
a fraction of the time and code a lazy pandera validation plus failure-case
regrouping would take.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from churn_kedro.duplicates import DuplicateTracker

ROW_NUMBER = "row_number"
SPLIT_COLUMN = "split"  # train / holdout, in processed snapshots
SPLITS = ("train", "holdout")
REASON = "reason"
RECORD = "record"
_QUARANTINE_COLUMNS = [ROW_NUMBER, REASON, RECORD]
# A quarantine row stores at most this much of its reason and raw record (a hostile file
# may hold megabyte cells; MySQL's TEXT holds 64 KB): cut text ends with TRUNCATED.
MAX_REASON_CHARS = 2_000
MAX_RECORD_CHARS = 8_000
TRUNCATED = "...[truncated]"
# Category values are stored in VARCHAR(255) columns (database.CATEGORY).
MAX_CATEGORY_CHARS = 255
# The longest customer id (characters, after stripping): the width of the databases' id
# column (churn_kedro.database.ID), so that no backend cuts an id silently.
DEFAULT_ID_MAX_LENGTH = 128


class SnapshotError(ValueError):
    """A file that breaks the contract as a whole: nothing of it may be used."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True)
class NumericRule:
    """A numeric feature: optional inclusive (min/max) and exclusive (gt/lt) bounds."""

    name: str
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    lt: float | None = None
    integer: bool = False
    nullable: bool = True


@dataclass(frozen=True)
class CategoricalRule:
    """A categorical feature; ``values`` None means any string is accepted."""

    name: str
    values: tuple[str, ...] | None = None
    nullable: bool = True


@dataclass(frozen=True)
class Schema:
    id_column: str
    target: str
    positive_label: str
    negative_label: str
    numeric: tuple[NumericRule, ...] = field(default_factory=tuple)
    categorical: tuple[CategoricalRule, ...] = field(default_factory=tuple)
    id_max_length: int = DEFAULT_ID_MAX_LENGTH

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Schema:
        """Build the schema from the ``schema`` parameters (see conf/base/parameters.yml)."""
        try:
            target = params["target"]
            numeric = tuple(
                NumericRule(name=str(name), **(rule or {}))
                for name, rule in (params.get("numeric_features") or {}).items()
            )
            categorical = tuple(
                CategoricalRule(
                    name=str(name),
                    values=None
                    if (rule or {}).get("values") is None
                    else tuple(str(v) for v in rule["values"]),
                    nullable=(rule or {}).get("nullable", True),
                )
                for name, rule in (params.get("categorical_features") or {}).items()
            )
            schema = cls(
                id_column=str(params["id_column"]),
                target=str(target["column"]),
                positive_label=_label_text(target["positive"]),
                negative_label=_label_text(target["negative"]),
                numeric=numeric,
                categorical=categorical,
                id_max_length=int(params.get("id_max_length", DEFAULT_ID_MAX_LENGTH)),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"schema parameters are incomplete or malformed: {exc!r}") from exc
        _check_yaml_types(params)
        if not schema.features:
            raise ValueError("schema parameters name no features")
        if schema.id_max_length < 1:
            raise ValueError(f"schema id_max_length must be 1 or more, got {schema.id_max_length}")
        return schema

    def to_dict(self) -> dict[str, Any]:
        """The parameters form again, JSON-serialisable (stored in the model card)."""
        return {
            "id_column": self.id_column,
            "id_max_length": self.id_max_length,
            "target": {
                "column": self.target,
                "positive": self.positive_label,
                "negative": self.negative_label,
            },
            "numeric_features": {
                r.name: {k: v for k, v in asdict(r).items() if k != "name" and v is not None}
                for r in self.numeric
            },
            "categorical_features": {
                r.name: {
                    **({"values": list(r.values)} if r.values is not None else {}),
                    "nullable": r.nullable,
                }
                for r in self.categorical
            },
        }

    @property
    def numeric_features(self) -> list[str]:
        return [r.name for r in self.numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [r.name for r in self.categorical]

    @property
    def features(self) -> list[str]:
        return self.numeric_features + self.categorical_features

    def required_columns(self, labelled: bool = True) -> list[str]:
        return [self.id_column, *self.features, *([self.target] if labelled else [])]

    def processed(self) -> Schema:
        """The rules of a processed snapshot: the same features, the target already
        encoded 0/1 (1 = positive), and the ``split`` column."""
        return replace(
            self,
            positive_label="1",
            negative_label="0",
            categorical=(*self.categorical, CategoricalRule(SPLIT_COLUMN, SPLITS, nullable=False)),
        )


def _check_yaml_types(params: dict[str, Any]) -> None:
    """YAML reads unquoted Yes/No/true/off as booleans: a label or category written that
    way would never match the file's text. Stop, showing the fix."""
    target = params["target"]
    found = [
        f"target.{key}: {target[key]!r}"
        for key in ("positive", "negative")
        if isinstance(target[key], bool)
    ]
    for name, rule in (params.get("categorical_features") or {}).items():
        values = (rule or {}).get("values") or []
        if any(isinstance(v, bool) for v in values) or (
            any(isinstance(v, str) for v in values)
            and any(isinstance(v, int | float) for v in values)
        ):
            found.append(f"categorical_features.{name}.values: {values!r}")
    if found:
        raise ValueError(
            "schema parameters hold values YAML did not read as text: "
            + "; ".join(found)
            + ". Unquoted Yes/No/true/false/on/off become booleans and 01 becomes 1: quote "
            'them as they appear in the files, e.g. positive: "Yes", values: ["Yes", "No"]'
        )


def _label_text(value: Any) -> str:
    """Labels compare as text; 1, 1.0 and "1" are the same label."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def newest_snapshot(keys: Iterable[str], pattern: str, where: str) -> str:
    """The newest snapshot among object keys (``raw/insurance_data_...csv``): the file
    name without ``.csv`` must match ``pattern``, whose capture group is the timestamp
    that orders snapshots. Only files directly under the prefix count (a folder below
    it is an archive, not a snapshot). ``where`` names the prefix in errors."""
    regex = re.compile(pattern)
    dated = []
    for key in keys:
        folder, _, name = key.partition("/")
        if "/" in name:
            continue
        if match := regex.match(name.removesuffix(".csv")):
            dated.append((match.group(1), key))
    if not dated:
        found = sorted(keys)
        raise SnapshotError(where, f"no file name matches {pattern!r}; found {found[:5] or 'none'}")
    return max(dated)[1]


def describe_read_error(exc: BaseException) -> str:
    """What went wrong when a file could not be parsed as a CSV at all, in plain words.
    Looks through wrapping errors (Kedro's DatasetError keeps the parser's as its cause)."""
    from pandas.errors import EmptyDataError, ParserError

    error: BaseException | None = exc
    while error is not None:
        if isinstance(error, EmptyDataError):
            return "the file is empty"
        if isinstance(error, UnicodeDecodeError):
            return f"not a UTF-8 text CSV ({error.reason} at byte {error.start})"
        if isinstance(error, ParserError):
            return f"not a well-formed CSV: {str(error).strip()}"
        error = error.__cause__ or error.__context__
    return str(exc).strip().splitlines()[-1]


def check_columns(columns: list[str], schema: Schema, source: str, labelled: bool = True) -> None:
    """Fail on a file-level breach: required columns missing (the usual sign of a
    wrong delimiter or a file that is not a CSV at all)."""
    present = {str(c).strip() for c in columns}
    missing = [c for c in schema.required_columns(labelled) if c not in present]
    if not missing:
        return
    problem = f"missing required column(s) {', '.join(missing)}"
    if len(present) == 1:
        header = next(iter(present))
        delimiter = next((d for d in ";\t|" if d in header), None)
        hint = f"a '{delimiter}'-delimited file" if delimiter else "not a comma-separated CSV"
        problem += f"; the header has a single column {header[:80]!r}: {hint}?"
    raise SnapshotError(source, problem)


@dataclass
class ValidationResult:
    valid: pd.DataFrame  # typed rows that pass every rule, contract columns only
    rejected: pd.DataFrame  # row_number, reason, record (the raw row as JSON)

    @property
    def summary(self) -> dict[str, Any]:
        reasons = self.rejected[REASON].str.split("; ").explode()
        fields = reasons.str.split(":").str[0] if len(reasons) else reasons
        return {
            "rows_valid": int(len(self.valid)),
            "rows_rejected": int(len(self.rejected)),
            "rejected_by_field": {str(k): int(v) for k, v in fields.value_counts().items()},
            "top_reasons": {str(k): int(v) for k, v in reasons.value_counts().head(5).items()},
        }


def validate_frame(
    raw: pd.DataFrame,
    schema: Schema,
    source: str,
    labelled: bool = True,
    first_row_number: int = 1,
    duplicates: bool | DuplicateTracker = True,
) -> ValidationResult:
    """Split raw text rows into typed valid rows and rejected rows with reasons.

    ``raw`` holds the file's cells as read (text or missing). Row numbers count
    data rows from 1 (the header is not a row); ``first_row_number`` lets a
    chunked reader keep the file's numbering. With ``duplicates`` an exact
    repeat of an earlier row is rejected as a duplicate of it, and an id that
    appears with different contents is rejected on every row that carries it
    (:mod:`churn_kedro.duplicates`). A chunked reader passes its own tracker, which
    judges the rows against the whole file read so far.
    """
    raw = raw.rename(columns=lambda c: str(c).strip())
    check_columns(list(raw.columns), schema, source, labelled)
    raw = raw[schema.required_columns(labelled)].reset_index(drop=True)
    problems: list[pd.Series] = []  # one Series of messages per failing check, aligned on rows
    typed: dict[str, pd.Series] = {}

    def fail(mask: pd.Series | np.ndarray, message: Callable[[pd.Index], pd.Series] | str) -> None:
        """``message`` is text, or a function of the failing rows' index that builds their
        messages: built for those rows only (a million-row chunk has few failing rows)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            rows = raw.index[mask]
            problems.append(message(rows) if callable(message) else pd.Series(message, index=rows))

    def text(column: str) -> pd.Series:
        values = raw[column].astype("string").str.strip()
        return values.mask(values == "")

    ids = text(schema.id_column)
    fail(ids.isna(), f"{schema.id_column}: missing")
    id_lengths = ids.str.len()
    fail(
        (id_lengths > schema.id_max_length).fillna(False),
        lambda r: (
            schema.id_column
            + ": "
            + id_lengths[r].astype(str)
            + f" characters, longer than the maximum of {schema.id_max_length}"
        ),
    )
    typed[schema.id_column] = ids

    for rule in schema.numeric:
        cells = text(rule.name)
        numbers = _to_float(cells)
        shown = _shown(cells.fillna(""))
        fail(
            cells.notna() & numbers.isna(),
            lambda r: rule.name + ": '" + shown[r] + "' is not a number",
        )
        fail(np.isinf(numbers), lambda r: rule.name + ": '" + shown[r] + "' is not finite")
        if not rule.nullable:
            fail(cells.isna(), f"{rule.name}: missing")
        if rule.integer:
            fail(
                numbers.notna() & (numbers % 1 != 0),
                lambda r: rule.name + ": " + shown[r] + " is not a whole number",
            )
        for bound, bad, words in (
            (rule.min, lambda b: numbers < b, "below the minimum"),
            (rule.max, lambda b: numbers > b, "above the maximum"),
            (rule.gt, lambda b: numbers <= b, "not greater than"),
            (rule.lt, lambda b: numbers >= b, "not less than"),
        ):
            if bound is not None:
                fail(bad(bound), lambda r: rule.name + ": " + shown[r] + f" is {words} {bound:g}")
        typed[rule.name] = numbers

    for rule in schema.categorical:
        cells = text(rule.name)
        if not rule.nullable:
            fail(cells.isna(), f"{rule.name}: missing")
        lengths = cells.str.len()
        fail(
            (lengths > MAX_CATEGORY_CHARS).fillna(False),
            lambda r: (
                rule.name
                + ": "
                + lengths[r].astype(int).astype(str)
                + f" characters, more than the {MAX_CATEGORY_CHARS} a category may have"
            ),
        )
        if rule.values is not None:
            allowed = ", ".join(rule.values)
            fail(
                cells.notna() & ~cells.isin(rule.values),
                lambda r: rule.name + ": '" + _shown(cells[r]) + f"' is not one of {allowed}",
            )
        typed[rule.name] = cells.astype(object).where(cells.notna(), None)

    if labelled:
        labels = text(schema.target)
        # few distinct labels: normalise each once, not once a row
        normalised = labels.map({v: _label_text(v) for v in labels.dropna().unique()})
        fail(labels.isna(), f"{schema.target}: missing")
        unknown = labels.notna() & ~normalised.isin([schema.positive_label, schema.negative_label])
        fail(
            unknown,
            lambda r: (
                schema.target
                + ": '"
                + labels[r]
                + f"' is not one of {schema.positive_label}, {schema.negative_label}"
            ),
        )
        # a chunk whose every label is missing compares as NA: those rows are rejected anyway
        positive = normalised.eq(schema.positive_label).fillna(False)
        typed[schema.target] = positive.astype("int64")

    if duplicates:
        check = duplicates if callable(duplicates) else DuplicateTracker(schema.id_column)
        found = check(raw, ids, first_row_number)
        fail(raw.index.isin(found.index), lambda r: found[r])

    reasons = (
        pd.concat(problems).groupby(level=0).agg("; ".join)
        if problems
        else pd.Series(dtype="string")
    )
    bad = raw.index.isin(reasons.index)
    valid = pd.DataFrame(typed)[~bad].reset_index(drop=True)
    rejected = pd.DataFrame(
        {
            ROW_NUMBER: (reasons.index + first_row_number).astype("int64"),
            REASON: [_bounded(r, MAX_REASON_CHARS) for r in reasons.astype(str)],
            RECORD: [
                _bounded(json.dumps(row, default=str), MAX_RECORD_CHARS)
                for row in raw.loc[reasons.index]
                .astype(object)
                .where(raw.loc[reasons.index].notna(), None)
                .to_dict("records")
            ],
        },
        columns=_QUARANTINE_COLUMNS,
    )
    return ValidationResult(valid=valid, rejected=rejected)


def _shown(cells: pd.Series, limit: int = 60) -> pd.Series:
    """Cells as a reason quotes them: a long one cut, with its length."""
    long = cells.str.len() > limit
    if not long.any():
        return cells
    cut = cells[long].str[:limit] + "... (" + cells[long].str.len().astype(str) + " characters)"
    return cells.where(~long, cut)


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def _to_float(cells: pd.Series) -> pd.Series:
    """``pd.to_numeric(errors="coerce")`` as float64; through Arrow's parser when every
    cell parses (the usual chunk: ~10x faster), else pandas' cell-by-cell coercion."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        parsed = pc.cast(pa.array(cells, type=pa.string(), from_pandas=True), pa.float64())
        return pd.Series(parsed.to_numpy(zero_copy_only=False), index=cells.index, dtype="float64")
    except Exception:  # a cell Arrow cannot parse (or no pyarrow): coerce it to NaN as before
        return pd.to_numeric(cells, errors="coerce").astype("float64")


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a frame (order-sensitive), recorded in the model card."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()[:16]
