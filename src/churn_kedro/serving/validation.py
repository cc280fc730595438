"""Request checks against the champion card's schema (the same rules as
churn_kedro.schema, which the card carries as data; JSON values instead of CSV text).

Every problem names its field (``instances[3].age``) and what was expected.
"""

from __future__ import annotations

import math
from typing import Any


class NonFinite:
    """A bare NaN / Infinity token in the body (json would parse it to a float)."""

    def __init__(self, token: str):
        self.token = token


class RequestError(Exception):
    def __init__(self, status: int, message: str, problems: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


MAX_PROBLEMS = 50
# The id's longest text when the card's schema names none (cards written before the
# schema had ``id_max_length``): churn_kedro.schema's default, the database column's width.
DEFAULT_ID_MAX_LENGTH = 128
_FLOAT_MAX = 1.7976931348623157e308


def id_problem(value: Any, max_length: int) -> str | None:
    """What is wrong with a customer id (a JSON integer or string), as ingestion sees it:
    blank text is missing, and the text is at most ``max_length`` characters."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"expected an integer or a non-empty string, got {_describe(value)}"
    if isinstance(value, str) and not value.strip():
        return "blank (an id needs a non-space character)"
    length = len(value) if isinstance(value, str) else len(str(value))
    if length > max_length:
        return f"{length} characters, longer than the maximum of {max_length}"
    return None


def _number_problem(value: Any, rule: dict[str, Any]) -> str | None:
    if value is None:
        return None if rule.get("nullable", True) else "missing (null is not allowed)"
    if isinstance(value, NonFinite):
        return f"{value.token} is not a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number, got {_describe(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, int) and abs(value) > _FLOAT_MAX:
        return f"an integer of {len(str(abs(value)))} digits is beyond the range of a number"
    if rule.get("integer") and value % 1 != 0:
        return f"{value:g} is not a whole number"
    for key, bad, words in (
        ("min", lambda b: value < b, "below the minimum"),
        ("max", lambda b: value > b, "above the maximum"),
        ("gt", lambda b: value <= b, "not greater than"),
        ("lt", lambda b: value >= b, "not less than"),
    ):
        if rule.get(key) is not None and bad(rule[key]):
            return f"{value:g} is {words} {rule[key]:g}"
    return None


def _category_problem(value: Any, rule: dict[str, Any]) -> str | None:
    if value is None:
        return None if rule.get("nullable", True) else "missing (null is not allowed)"
    if not isinstance(value, str):
        return f"expected a string, got {_describe(value)}"
    values = rule.get("values")
    if values is not None and value.strip() not in values:
        return f"'{value}' is not one of {', '.join(values)}"
    return None


def _describe(value: Any) -> str:
    if isinstance(value, NonFinite):
        return value.token
    kind = {bool: "boolean", str: "string", list: "array", dict: "object", type(None): "null"}.get(
        type(value), type(value).__name__
    )
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**60:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value) if not isinstance(value, (list, dict)) else ""
    return f"{kind} {text}".strip()[:80]


def check_instances(
    body: Any, card: dict[str, Any], max_batch: int
) -> tuple[list[Any], dict[str, list]]:
    """(customer ids, {feature: column of values}) of a valid /predict body, else RequestError."""
    if not isinstance(body, dict):
        raise RequestError(
            422, f'the body must be a JSON object {{"instances": [...]}}, got {_describe(body)}'
        )
    unknown_keys = sorted(set(body) - {"instances"})
    if unknown_keys:
        raise RequestError(
            422, f"unknown top-level field(s) {', '.join(unknown_keys)}; expected only 'instances'"
        )
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise RequestError(
            422,
            "instances: missing or not an array of objects",
            [{"field": "instances", "problem": "missing or not an array of objects"}],
        )
    if not instances:
        empty = f"empty batch; send 1 to {max_batch} objects"
        raise RequestError(422, f"instances: {empty}", [{"field": "instances", "problem": empty}])
    if len(instances) > max_batch:
        large = f"{len(instances)} rows, more than the maximum batch of {max_batch}"
        raise RequestError(413, f"instances: {large}", [{"field": "instances", "problem": large}])
    fast = _fast_columns(instances, card)
    if fast is not None:
        return fast
    schema = card["schema"]
    id_column = schema["id_column"]
    id_max_length = schema.get("id_max_length", DEFAULT_ID_MAX_LENGTH)
    numeric, categorical = schema["numeric_features"], schema["categorical_features"]
    known = {id_column, *numeric, *categorical}
    rules = [
        *((name, rule, _number_problem) for name, rule in numeric.items()),
        *((name, rule, _category_problem) for name, rule in categorical.items()),
    ]
    problems: list[dict[str, str]] = []
    ids: list[Any] = []
    columns: dict[str, list] = {name: [] for name in card["features"]}

    def problem(i: int, name: str, text: str) -> None:
        problems.append(
            {"field": f"instances[{i}].{name}" if name else f"instances[{i}]", "problem": text}
        )

    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            problem(i, "", f"expected an object, got {_describe(row)}")
            continue
        customer = row.get(id_column)
        if id_column not in row or customer is None:
            problem(i, id_column, "missing")
        elif text := id_problem(customer, id_max_length):
            problem(i, id_column, text)
        ids.append(customer)
        for name, rule, check in rules:
            if name not in row:
                problem(i, name, "missing (send null for an unknown value)")
                continue
            value = row[name]
            text = check(value, rule)
            if text:
                problem(i, name, text)
            columns[name].append(value.strip() if isinstance(value, str) else value)
        for name in sorted(set(row) - known):
            problem(i, name, "unknown field")
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RequestError(
            422, f"{first['field']}: {first['problem']}{more}", problems[:MAX_PROBLEMS]
        )
    return ids, columns


_NUMBER_TYPES = (int, float)


def _fast_columns(
    instances: list[Any], card: dict[str, Any]
) -> tuple[list[Any], dict[str, list]] | None:
    """The common case, checked a column at a time (numpy for the rules); None as soon
    as anything looks wrong: the row-by-row pass then names every problem."""
    import numpy as np

    schema = card["schema"]
    id_column = schema["id_column"]
    numeric, categorical = schema["numeric_features"], schema["categorical_features"]
    keys = {id_column, *numeric, *categorical}
    if not all(type(row) is dict and row.keys() == keys for row in instances):
        return None
    ids = [row[id_column] for row in instances]
    id_max_length = schema.get("id_max_length", DEFAULT_ID_MAX_LENGTH)
    if not all(
        (type(i) is str and 0 < len(i) <= id_max_length and not i.isspace())
        or (type(i) is int and len(str(i)) <= id_max_length)
        for i in ids
    ):
        return None
    columns: dict[str, list] = {}
    for name, rule in numeric.items():
        values = [row[name] for row in instances]
        nullable = rule.get("nullable", True)
        if not all(type(v) in _NUMBER_TYPES or (v is None and nullable) for v in values):
            return None
        try:
            x = np.array([np.nan if v is None else v for v in values], dtype="float64")
        except OverflowError:  # an integer beyond a float's range
            return None
        present = x[~np.isnan(x)]
        if not np.isfinite(present).all() or (rule.get("integer") and (present % 1 != 0).any()):
            return None
        for key, bad in (
            ("min", np.less),
            ("max", np.greater),
            ("gt", np.less_equal),
            ("lt", np.greater_equal),
        ):
            if rule.get(key) is not None and bad(present, rule[key]).any():
                return None
        columns[name] = x
    for name, rule in categorical.items():
        values = [row[name] for row in instances]
        allowed = set(rule["values"]) if rule.get("values") is not None else None
        nullable = rule.get("nullable", True)
        if not all(
            (v is None and nullable) or (type(v) is str and (allowed is None or v in allowed))
            for v in values
        ):
            return None
        columns[name] = values
    return ids, {name: columns[name] for name in card["features"]}
