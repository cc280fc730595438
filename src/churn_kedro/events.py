"""The S3 "Object Created" trigger (see docs/architecture.md: AWS mapping), kept in one place.

infra/template.yaml inlines the same pattern in its EventBridge rules (and a test
checks they are equal); the Glue wrappers and the local ``watch`` command read the
object out of such an event with :func:`object_from_event`.
"""

from __future__ import annotations

from typing import Any

# The prefixes the two ingestion jobs listen on, under the data bucket.
RAW_PREFIX = "raw/"
PROCESSED_PREFIX = "processed/"


def object_created_pattern(bucket: str, prefix: str) -> dict[str, Any]:
    """The EventBridge pattern matching an object created under ``prefix`` of ``bucket``
    (the bucket must send its events to EventBridge)."""
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [bucket]},
            "object": {"key": [{"prefix": prefix}]},
        },
    }


def object_from_event(event: dict[str, Any]) -> tuple[str, str]:
    """(bucket, key) of an "Object Created" event; ValueError naming what is missing."""
    try:
        if event["detail-type"] != "Object Created":
            raise ValueError(f"not an 'Object Created' event: {event['detail-type']!r}")
        return event["detail"]["bucket"]["name"], event["detail"]["object"]["key"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an S3 'Object Created' event: no {exc}") from None
