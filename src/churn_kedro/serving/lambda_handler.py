"""AWS Lambda entry point (the image's CMD): API Gateway REST (v1) proxy events and
HTTP API (v2) events, mapped onto the one Application. The application (and the
champion) is created once per container, at import, so the first request pays for
nothing but itself."""

from __future__ import annotations

import base64
from typing import Any

from churn_kedro.serving.app import ROUTES, Application

APP = Application()


def _request(event: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes]:
    if event.get("version") == "2.0":  # HTTP API
        http = event.get("requestContext", {}).get("http", {})
        method, path = http.get("method", "GET"), event.get("rawPath") or http.get("path", "/")
    else:  # REST API proxy (v1)
        method, path = event.get("httpMethod", "GET"), event.get("path", "/")
    # A stage or base path mapping prefixes the path (/v1/predict): route on the last part.
    for route in ROUTES:
        if path.endswith(route):
            path = route
            break
    body = event.get("body") or ""
    # "surrogatepass": a lone surrogate in the event's text reaches the JSON parser (a 400).
    data = (
        base64.b64decode(body)
        if event.get("isBase64Encoded")
        else body.encode("utf-8", "surrogatepass")
    )
    return method, path, dict(event.get("headers") or {}), data


def handler(
    event: dict[str, Any], context: Any = None, app: Application | None = None
) -> dict[str, Any]:
    app = app or APP
    try:
        method, path, headers, body = _request(event)
    except ValueError as exc:  # a body flagged base64 that is not (binascii.Error)
        response = app.error(400, f"the body is not valid base64: {exc}")
    else:
        response = app.handle(method, path, headers, body)
    return {
        "statusCode": response.status,
        "headers": response.headers,
        "body": response.encoded().decode(),
        "isBase64Encoded": False,
    }
