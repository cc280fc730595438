"""The inference API (see docs/architecture.md: serving API) as one plain application object.

``Application.handle(method, path, headers, body)`` -> ``Response``; the local HTTP
server (``python -m churn_kedro.serving``) and the Lambda handler (API Gateway REST
v1 and HTTP API v2 events) are thin adapters around it. No web framework: the whole
cold start is numpy + fsspec + this package (see benchmarks/bench_serving.py).

Errors: ``{"error": {"status", "message", "problems": [{"field", "problem"}]},
"model_version"}``; every answer carries ``model_version`` (body and the
``X-Model-Version`` header; null when no champion is loaded).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from churn_kedro.inference import predict
from churn_kedro.serving.champion import ChampionSource, NoChampion
from churn_kedro.serving.validation import (
    DEFAULT_ID_MAX_LENGTH,
    NonFinite,
    RequestError,
    check_instances,
)

logger = logging.getLogger(__name__)

DEFAULT_REGISTRY = "data/06_models/registry"
DEFAULT_REFRESH_SECONDS = 60.0
DEFAULT_MAX_BATCH = 1000
MAX_BODY_BYTES = 6 * 1024 * 1024  # the Lambda payload limit: the same API both ways

# The API's routes, {path: {method: Application method}}: the one list that the local
# server, the Lambda handler (a stage prefix is cut to one of these) and /openapi.json use.
ROUTES: dict[str, dict[str, str]] = {
    "/predict": {"POST": "predict"},
    "/health": {"GET": "health"},
    "/model": {"GET": "model"},
    "/openapi.json": {"GET": "openapi"},
}

# A character that str.strip() keeps (so an id is not blank), in a regular expression that
# reads the same in ECMA-262 (OpenAPI's) and in Python: "\\S" differs between the two.
NOT_BLANK = r"[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

# A "\ud800"-style escape of a UTF-16 surrogate; the escaped text is checked only when
# the body has one (a valid pair, e.g. an emoji, is fine; a lone half is not text).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        """orjson writes a 10,000-row answer in ~1 ms, json in ~10 ms. Never raises:
        json's ASCII form escapes whatever orjson refuses (an integer id beyond 64 bits)."""
        try:
            return orjson.dumps(self.body)
        except orjson.JSONEncodeError:
            return json.dumps(self.body).encode()


def _parse_json(body: bytes | str | None) -> Any:
    """json, not orjson (which is only ~4 ms faster on a 10,000-row batch): it keeps
    NaN and Infinity tokens for validation to name their field, and integers beyond
    64 bits exact (orjson makes them floats; an id must come back as sent).

    400 for what is not JSON text, nested too deeply for the parser, a number of more
    digits than Python converts (4,300), or a lone UTF-16 surrogate escape."""
    if isinstance(body, str):  # a lone surrogate character then fails to decode below
        body = body.encode("utf-8", "surrogatepass")
    try:
        text = body.decode("utf-8") if body else ""
        document = json.loads(text, parse_constant=NonFinite)
    except RecursionError:
        raise RequestError(400, "the body is not valid JSON: nested too deeply") from None
    except (UnicodeError, ValueError) as exc:  # JSONDecodeError is a ValueError, as is
        # the int-string limit ("Exceeds the limit (4300 digits) ...")
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                400,
                "the body is not valid JSON text: it escapes a lone UTF-16 surrogate "
                "(\\ud800-\\udfff without its pair), which is no character",
            ) from None
    return document


class Application:
    def __init__(
        self,
        registry: str | None = None,
        refresh_seconds: float | None = None,
        max_batch: int | None = None,
        storage_options: dict[str, Any] | None = None,
    ):
        env = os.environ
        self.registry = registry or env.get("CHURN_REGISTRY") or DEFAULT_REGISTRY
        refresh = (
            refresh_seconds
            if refresh_seconds is not None
            else float(env.get("CHURN_CHAMPION_REFRESH_SECONDS", DEFAULT_REFRESH_SECONDS))
        )
        self.max_batch = int(
            max_batch if max_batch is not None else env.get("CHURN_MAX_BATCH", DEFAULT_MAX_BATCH)
        )
        self.champions = ChampionSource(self.registry, refresh, storage_options)

    # ---- dispatch -----------------------------------------------------------------
    def handle(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | str | None = None,
    ) -> Response:
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        path = "/" + path.strip("/")
        try:
            if path not in ROUTES:
                raise RequestError(404, f"no such path {path}; the API has {', '.join(ROUTES)}")
            allowed = ROUTES[path]
            method = method.upper()
            if method == "HEAD" and "GET" in allowed:
                method = "GET"
            if method not in allowed:
                response = self._error(
                    RequestError(405, f"{method} {path}: use {', '.join(allowed)}")
                )
                response.headers["Allow"] = ", ".join(allowed)
                return response
            return getattr(self, allowed[method])(headers, body)
        except RequestError as exc:
            return self._error(exc)
        except NoChampion as exc:
            return self._error(RequestError(503, str(exc)), version=None)
        except Exception:  # a bug of ours, not the caller's: say so without leaking internals
            logger.exception("%s %s failed", method, path)
            return self._error(
                RequestError(500, "internal error while answering; see the service log")
            )

    def _version(self) -> str | None:
        try:
            return self.champions.get()["version"]
        except NoChampion:
            return None

    def _answer(self, status: int, body: dict[str, Any], version: str | None) -> Response:
        headers = {"Content-Type": "application/json"}
        if version:
            headers["X-Model-Version"] = version
        return Response(status, body, headers)

    def error(self, status: int, message: str) -> Response:
        """An answer in the error shape (the local server's own refusals use it)."""
        return self._error(RequestError(status, message))

    def _error(self, exc: RequestError, version: str | None | bool = False) -> Response:
        version = self._version() if version is False else version
        body = {
            "error": {"status": exc.status, "message": exc.message, "problems": exc.problems},
            "model_version": version,
        }
        return self._answer(exc.status, body, version)

    # ---- endpoints ----------------------------------------------------------------
    def predict(self, headers: dict[str, str], body: bytes | str | None) -> Response:
        champion = self.champions.get()
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(
                415, f"Content-Type must be application/json, got {content_type or 'none'}"
            )
        document = _parse_json(body)
        ids, columns = check_instances(document, champion["card"], self.max_batch)
        result = predict(champion, columns)
        predictions = [
            {"customer_id": customer, "churn_probability": p, "churn": label}
            for customer, p, label in zip(ids, result.probability.tolist(), result.label.tolist())
        ]
        return self._answer(
            200,
            {
                "model_version": result.model_version,
                "threshold": float(champion["card"]["threshold"]),
                "predictions": predictions,
            },
            result.model_version,
        )

    def health(self, headers, body) -> Response:
        version = self.champions.get()["version"]
        answer = {"status": "ok", "model_version": version}
        if self.champions.warning:  # serving the last good model, not what the registry says
            answer["warning"] = self.champions.warning
        return self._answer(200, answer, version)

    def model(self, headers, body) -> Response:
        champion = self.champions.get()
        return self._answer(
            200,
            {
                "model_version": champion["version"],
                "card": champion["card"],
                "monitoring": self._monitoring(champion["version"]),
            },
            champion["version"],
        )

    def _monitoring(self, version: str) -> dict[str, Any] | None:
        """The champion's latest monitoring verdict ({"verdict", "at", "reasons", ...}),
        from the registry's monitoring/latest.json (written by `kedro run --pipeline
        monitor`); None when this champion has not been monitored."""
        registry = self.champions.registry
        try:
            doc = json.loads(registry.fs.cat_file(f"{registry.root}/monitoring/latest.json"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("model_version") == version else None

    def openapi(self, headers, body) -> Response:
        try:
            champion = self.champions.get()
        except NoChampion:
            champion = None
        version = champion["version"] if champion else None
        return self._answer(
            200, openapi_document(champion["card"] if champion else None, self.max_batch), version
        )


def _bounds(rule: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0 bounds of a numeric rule: ``minimum`` with a boolean ``exclusiveMinimum``
    (3.0 has no numeric form); of an inclusive and an exclusive bound, the tighter."""
    out: dict[str, Any] = {}
    for inclusive, exclusive, key, tighter in (
        ("min", "gt", "minimum", max),
        ("max", "lt", "maximum", min),
    ):
        low, strict = rule.get(inclusive), rule.get(exclusive)
        if low is None and strict is None:
            continue
        bound = tighter(b for b in (low, strict) if b is not None)
        out[key] = bound
        if strict is not None and strict == bound:
            out["exclusive" + key.capitalize()] = True
    return out


def _instance_schema(card: dict[str, Any] | None) -> dict[str, Any]:
    if card is None:
        return {
            "type": "object",
            "description": "the champion card's features (no champion loaded)",
        }
    schema = card["schema"]
    longest = schema.get("id_max_length", DEFAULT_ID_MAX_LENGTH)
    properties: dict[str, Any] = {
        schema["id_column"]: {
            "description": f"the customer id: an integer of at most {longest} characters "
            f"as text, or a string of 1 to {longest} characters, not only spaces",
            "oneOf": [
                {"type": "integer"},
                {"type": "string", "minLength": 1, "maxLength": longest, "pattern": NOT_BLANK},
            ],
        }
    }
    for name, rule in schema["numeric_features"].items():
        prop: dict[str, Any] = {
            "type": "integer" if rule.get("integer") else "number",
            "nullable": rule.get("nullable", True),
            **_bounds(rule),
        }
        properties[name] = prop
    for name, rule in schema["categorical_features"].items():
        nullable = rule.get("nullable", True)
        prop = {"type": "string", "nullable": nullable}
        if rule.get("values") is not None:  # an enum lists null too when null is accepted
            prop["enum"] = [*rule["values"], *([None] if nullable else [])]
        properties[name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Model-Version": {"$ref": "#/components/headers/ModelVersion"}},
        "content": {"application/json": {"schema": schema}},
    }


def openapi_document(card: dict[str, Any] | None, max_batch: int) -> dict[str, Any]:
    """OpenAPI 3.0.3 of the API; the instance schema is the current champion's."""
    error = {"$ref": "#/components/schemas/Error"}
    errors = {
        str(code): _json(error, text)
        for code, text in (
            (400, "the body is not JSON text (or the request is malformed)"),
            (
                413,
                f"the body is larger than {MAX_BODY_BYTES} bytes, "
                f"or the batch larger than {max_batch} instances",
            ),
            (415, "Content-Type is not application/json"),
            (422, "a field breaks the schema (each problem names its field)"),
            (503, "no champion to serve"),
        )
    }
    errors["405"] = {
        **_json(error, "this method is not allowed here"),
        "headers": {
            "Allow": {"description": "the allowed method(s)", "schema": {"type": "string"}},
            "X-Model-Version": {"$ref": "#/components/headers/ModelVersion"},
        },
    }
    version = {"type": "string", "nullable": True}

    def operation(summary: str, ok: dict[str, Any], *codes: str, **extra: Any) -> dict:
        return {
            "summary": summary,
            **extra,
            "responses": {"200": ok, **{code: errors[code] for code in ("405", *codes)}},
        }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "churn-kedro inference API",
            "version": card["version"] if card else "none",
            "description": "Churn probability of policyholders from the serving champion.",
        },
        "paths": {
            "/predict": {
                "post": operation(
                    "Churn probability and label for a batch of customers",
                    _json({"$ref": "#/components/schemas/Predictions"}, "predictions"),
                    "400",
                    "413",
                    "415",
                    "422",
                    "503",
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["instances"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "instances": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": max_batch,
                                            "items": {"$ref": "#/components/schemas/Instance"},
                                        }
                                    },
                                }
                            }
                        },
                    },
                )
            },
            "/health": {
                "get": operation(
                    "Liveness and the serving version",
                    _json(
                        {
                            "type": "object",
                            "required": ["status", "model_version"],
                            "properties": {
                                "status": {"type": "string", "enum": ["ok"]},
                                "model_version": {"type": "string"},
                                "warning": {
                                    "type": "string",
                                    "description": "present when the model served may not "
                                    "be the registry's champion (champion.json missing or "
                                    "unreadable, the new champion cannot be loaded)",
                                },
                            },
                        },
                        "a champion is loaded",
                    ),
                    "503",
                )
            },
            "/model": {
                "get": operation(
                    "The champion's model card",
                    _json(
                        {
                            "type": "object",
                            "required": ["model_version", "card"],
                            "properties": {
                                "model_version": {"type": "string"},
                                "card": {"type": "object"},
                                "monitoring": {"type": "object", "nullable": True},
                            },
                        },
                        "the card",
                    ),
                    "503",
                )
            },
            "/openapi.json": {
                "get": operation(
                    "This document", _json({"type": "object"}, "OpenAPI 3.0.3 of this API")
                )
            },
        },
        "components": {
            "headers": {
                "ModelVersion": {
                    "description": "the serving champion's version (absent without one)",
                    "schema": {"type": "string"},
                }
            },
            "schemas": {
                "Instance": _instance_schema(card),
                "Predictions": {
                    "type": "object",
                    "required": ["model_version", "threshold", "predictions"],
                    "properties": {
                        "model_version": {"type": "string"},
                        "threshold": {"type": "number"},
                        "predictions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["customer_id", "churn_probability", "churn"],
                                "properties": {
                                    "customer_id": {
                                        "oneOf": [{"type": "integer"}, {"type": "string"}]
                                    },
                                    "churn_probability": {
                                        "type": "number",
                                        "minimum": 0,
                                        "maximum": 1,
                                    },
                                    "churn": {"type": "boolean"},
                                },
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "model_version"],
                    "properties": {
                        "model_version": version,
                        "error": {
                            "type": "object",
                            "required": ["status", "message", "problems"],
                            "properties": {
                                "status": {"type": "integer"},
                                "message": {"type": "string"},
                                "problems": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["field", "problem"],
                                        "properties": {
                                            "field": {"type": "string"},
                                            "problem": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    }
