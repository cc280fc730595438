"""One ingestion run: every object under a prefix that ``ingestion_log`` does not hold yet
goes through validation into the store, one transaction an object. Shared by the
``ingest_raw`` and ``ingest_processed`` pipelines (their nodes only pick the table and
the rules).

A file-level error names the file, writes nothing of it, and the run goes on with the
other objects; :func:`raise_on_ingestion_errors` then fails the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from churn_kedro.ingestion.store import (
    AlreadyIngested,
    IngestionDatabase,
    ObjectLoadError,
    remove_stale_staging,
)
from churn_kedro.schema import Schema, SnapshotError

if TYPE_CHECKING:
    from churn_kedro.datasets.snapshot_objects_dataset import SnapshotObject

logger = logging.getLogger(__name__)


class IngestionError(RuntimeError):
    """Some objects could not be ingested; the others were."""


def _wanted(objects: dict[str, SnapshotObject], keys: Any) -> tuple[set[str], list[str]]:
    """The source_files among ``objects`` named by ``keys`` (a key, a file name, or a
    list of them; "all" for every object), and the names that match none."""
    if keys in (None, "", [], False):
        return set(), []
    if keys == "all":
        return set(objects), []
    names = [keys] if isinstance(keys, str) else [str(k) for k in keys]

    def matches(name: str, key: str, obj: SnapshotObject) -> bool:
        return key == name or obj.uri.endswith("/" + name)

    found = {k for k, o in objects.items() if any(matches(n, k, o) for n in names)}
    missing = [n for n in names if not any(matches(n, k, o) for k, o in objects.items())]
    return found, missing


def unchanged(entry: dict[str, Any] | None, obj: SnapshotObject) -> bool:
    """Whether ``ingestion_log`` holds ``obj`` with the same content: the cheap signals
    (size, ETag or mtime) must match and so must the sha256 of the bytes, since a copy
    that keeps the size and the modification time (``cp -p``, ``rsync -t``) changes
    neither signal. The checksum costs one read of the object (about 0.1 s for a
    million-row file on local disk)."""
    if entry is None or entry["size_bytes"] != obj.size:
        return False
    return entry["checksum"] == obj.compute_checksum()


def ingest_objects(
    objects: dict[str, SnapshotObject],
    database: Callable[[Schema], IngestionDatabase],
    schema: Schema,
    validation_schema: Schema,
    table: str,
    params: dict[str, Any],
    force: bool,
) -> dict[str, Any]:
    """Ingest every object that ``ingestion_log`` does not hold yet; returns the run's report.

    ``params``: ``chunk_rows``; ``only``, the objects to look at (default all);
    ``reload``, objects to load again even though they are unchanged (a key, a list of
    keys, or "all": after fixing the configuration they were loaded under). An object
    whose content changed since it was loaded is replaced only with ``force``. A reload
    or a replacement swaps the object's rows, quarantine and log row in one transaction.
    """
    remove_stale_staging()
    db = database(schema)
    log = db.ingestion_log()
    only, missing = _wanted(objects, params.get("only"))
    if params.get("only"):
        objects = {k: o for k, o in objects.items() if k in only}
    reload, missing_reload = _wanted(objects, params.get("reload"))
    report: dict[str, Any] = {
        "table": table,
        "loaded": [],
        "skipped": [],
        "errors": [
            {"source_file": name, "error": f"{name}: no such object under the prefix"}
            for name in [*missing, *missing_reload]
        ],
    }
    for source_file, obj in objects.items():
        entry = log.get(source_file)
        replace = entry is not None
        if entry is not None and source_file not in reload:
            if unchanged(entry, obj):
                report["skipped"].append(source_file)
                continue
            if not force:
                message = (
                    f"{obj.uri}: changed since it was loaded at {entry['finished_at']} "
                    f"(sha256 {entry['checksum'][:12]}... now {obj.compute_checksum()[:12]}...); not "
                    f"replaced: run again with --params force=true to replace it"
                )
                logger.error(message)
                report["errors"].append({"source_file": source_file, "error": message})
                continue
            logger.warning("%s changed since it was loaded: replacing it (force)", obj.uri)
        elif entry is not None:
            logger.warning("%s: loading it again (reload)", obj.uri)
        counts = {"rows_read": 0}

        def finish(obj=obj, counts=counts) -> dict[str, Any]:
            return {
                "checksum": obj.checksum,
                "size_bytes": obj.size,
                "object_version": obj.version,
                "rows_read": counts["rows_read"],
            }

        try:
            result = db.load_object(
                table,
                source_file,
                obj.validated_chunks(validation_schema, params["chunk_rows"], counts),
                finish,
                replace=replace,
            )
        except (SnapshotError, ObjectLoadError) as exc:
            logger.error("%s (nothing of it was written)", exc)
            report["errors"].append({"source_file": source_file, "error": str(exc)})
            continue
        except AlreadyIngested:
            logger.info("%s: already ingested by another run", source_file)
            report["skipped"].append(source_file)
            continue
        logger.info(
            "%s: %s %d rows into %s, %d quarantined",
            source_file,
            result["status"],
            result["rows_loaded"],
            table,
            result["rows_rejected"],
        )
        report["loaded"].append(result)
    logger.info(
        "Ingestion into %s: %d loaded, %d skipped, %d failed",
        table,
        len(report["loaded"]),
        len(report["skipped"]),
        len(report["errors"]),
    )
    return report


def raise_on_ingestion_errors(report: dict[str, Any]) -> None:
    """Fail the run (non-zero exit) when any object failed, after the others were ingested."""
    if report["errors"]:
        lines = "\n".join(f"  - {e['error']}" for e in report["errors"])
        raise IngestionError(
            f"{len(report['errors'])} object(s) not ingested into {report['table']} "
            f"({len(report['loaded'])} loaded, {len(report['skipped'])} already there):\n{lines}"
        )
