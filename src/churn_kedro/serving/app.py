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
from dataclasses import dataclass, field
from typing import Any

import orjson

from churn_kedro.inference import predict
from churn_kedro.serving.champion import ChampionSource, NoChampion
from churn_kedro.serving.validation import NonFinite, RequestError, check_instances

logger = logging.getLogger(__name__)

DEFAULT_REGISTRY = "data/06_models/registry"
DEFAULT_REFRESH_SECONDS = 60.0
DEFAULT_MAX_BATCH = 1000


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        """orjson writes a 10,000-row answer in ~1 ms, json in ~10 ms."""
        try:
            return orjson.dumps(self.body)
        except orjson.JSONEncodeError:  # an integer id beyond 64 bits
            return json.dumps(self.body, ensure_ascii=False).encode()


def _parse_json(body: bytes | str | None) -> Any:
    """json, not orjson (which is only ~4 ms faster on a 10,000-row batch): it keeps
    NaN and Infinity tokens for validation to name their field, and integers beyond
    64 bits exact (orjson makes them floats; an id must come back as sent)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else (body or "")
        return json.loads(text, parse_constant=NonFinite)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None


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
        routes = {
            "/predict": {"POST": self.predict},
            "/health": {"GET": self.health},
            "/model": {"GET": self.model},
            "/openapi.json": {"GET": self.openapi},
        }
        try:
            if path not in routes:
                raise RequestError(404, f"no such path {path}; the API has {', '.join(routes)}")
            allowed = routes[path]
            method = method.upper()
            if method == "HEAD" and "GET" in allowed:
                method = "GET"
            if method not in allowed:
                response = self._error(
                    RequestError(405, f"{method} {path}: use {', '.join(allowed)}")
                )
                response.headers["Allow"] = ", ".join(allowed)
                return response
            return allowed[method](headers, body)
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
            {"model_version": champion["version"], "card": champion["card"]},
            champion["version"],
        )

    def openapi(self, headers, body) -> Response:
        try:
            champion = self.champions.get()
        except NoChampion:
            champion = None
        version = champion["version"] if champion else None
        return self._answer(
            200, openapi_document(champion["card"] if champion else None, self.max_batch), version
        )


def _instance_schema(card: dict[str, Any] | None) -> dict[str, Any]:
    if card is None:
        return {
            "type": "object",
            "description": "the champion card's features (no champion loaded)",
        }
    schema = card["schema"]
    properties: dict[str, Any] = {
        schema["id_column"]: {"oneOf": [{"type": "integer"}, {"type": "string"}]}
    }
    for name, rule in schema["numeric_features"].items():
        prop: dict[str, Any] = {
            "type": "integer" if rule.get("integer") else "number",
            "nullable": rule.get("nullable", True),
        }
        for key, openapi_key in (
            ("min", "minimum"),
            ("max", "maximum"),
            ("gt", "exclusiveMinimum"),
            ("lt", "exclusiveMaximum"),
        ):
            if rule.get(key) is not None:
                prop[openapi_key] = rule[key]
        properties[name] = prop
    for name, rule in schema["categorical_features"].items():
        prop = {"type": "string", "nullable": rule.get("nullable", True)}
        if rule.get("values") is not None:
            prop["enum"] = list(rule["values"])
        properties[name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def openapi_document(card: dict[str, Any] | None, max_batch: int) -> dict[str, Any]:
    """OpenAPI 3.0 of the API; the instance schema is the current champion's."""
    error = {"$ref": "#/components/schemas/Error"}
    errors = {
        str(code): {"description": text, "content": {"application/json": {"schema": error}}}
        for code, text in (
            (400, "body is not JSON"),
            (413, "batch larger than the maximum"),
            (415, "Content-Type is not application/json"),
            (422, "a field breaks the schema (each problem names its field)"),
            (503, "no champion to serve"),
        )
    }
    version = {"type": "string", "nullable": True}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "churn-kedro inference API",
            "version": card["version"] if card else "none",
            "description": "Churn probability of policyholders from the serving champion.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Churn probability and label for a batch of customers",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["instances"],
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
                    "responses": {
                        "200": {
                            "description": "predictions",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Predictions"}
                                }
                            },
                        },
                        **errors,
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness and the serving version",
                    "responses": {
                        "200": {"description": "a champion is loaded"},
                        "503": errors["503"],
                    },
                }
            },
            "/model": {
                "get": {
                    "summary": "The champion's model card",
                    "responses": {"200": {"description": "the card"}, "503": errors["503"]},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Instance": _instance_schema(card),
                "Predictions": {
                    "type": "object",
                    "properties": {
                        "model_version": {"type": "string"},
                        "threshold": {"type": "number"},
                        "predictions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "customer_id": {
                                        "oneOf": [{"type": "integer"}, {"type": "string"}]
                                    },
                                    "churn_probability": {"type": "number"},
                                    "churn": {"type": "boolean"},
                                },
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "properties": {
                        "model_version": version,
                        "error": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "integer"},
                                "message": {"type": "string"},
                                "problems": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
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
            }
        },
    }
