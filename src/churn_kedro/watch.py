"""The local stand-in for the S3 "Object Created" rules: poll the raw and processed
prefixes and run the ingestion pipeline for each new (or changed) object.

    python -m churn_kedro.watch [--env local] [--interval 5] [--once]

Run from the project root (``make watch``). Works on any environment: on ``aws`` it
polls the S3 prefixes. Each object gets its own run (``--params ingestion.only=<key>``),
as one EventBridge event starts one Glue run for its object.

After a raw object is ingested, and when a champion exists, the ``monitor`` pipeline runs;
its ``retrain`` verdict (the exit code ``monitor.exit_code_on_retrain`` of ``kedro run
--pipeline monitor``) starts the ``retrain`` pipeline (``--no-monitor`` turns this off).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

logger = logging.getLogger("churn_kedro.watch")

# pipeline -> the catalog entry listing the prefix it ingests
WATCHED = {"ingest_raw": "raw_objects", "ingest_processed": "processed_objects"}


def run_ingestion(project: Path, env: str | None, pipeline: str, source_file: str) -> bool:
    from kedro.framework.session import KedroSession

    try:
        with KedroSession.create(
            project_path=project, env=env, runtime_params={"ingestion.only": source_file}
        ) as session:
            session.run(pipeline_names=[pipeline])
    except Exception as exc:  # the run reported it; keep watching
        logger.error("%s of %s failed: %s", pipeline, source_file, exc)
        return False
    return True


def monitor_and_retrain(project: Path, env: str | None) -> bool:
    """The monitor pipeline; on a ``retrain`` verdict, the retrain pipeline. False when a
    run failed."""
    from kedro.framework.session import KedroSession

    from churn_kedro.pipelines.monitor.nodes import RetrainRequired

    try:
        with KedroSession.create(project_path=project, env=env) as session:
            if session.load_context().catalog.load("monitored_champion") is None:
                logger.info("No champion yet: nothing to monitor")
                return True
            session.run(pipeline_names=["monitor"])
        return True
    except RetrainRequired:
        logger.warning("Monitoring says retrain: running the retrain pipeline")
    except Exception as exc:  # the run reported it; keep watching
        logger.error("monitor failed: %s", exc)
        return False
    try:
        with KedroSession.create(project_path=project, env=env) as session:
            session.run(pipeline_names=["retrain"])
    except Exception as exc:
        logger.error("retrain failed: %s", exc)
        return False
    return True


def watch(project: Path, env: str | None, interval: float, once: bool, monitor: bool = True) -> int:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from churn_kedro.ingestion.run import unchanged
    from churn_kedro.schema import Schema

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env) as session:
        context = session.load_context()
    catalog = context.catalog
    database = catalog.load("ingestion_database")(Schema.from_params(context.params["schema"]))
    # (size, version) of each object this watcher handed to a run or found ingested: the
    # listing's cheap signals decide when to look again; the run compares the checksum.
    seen_as: dict[str, tuple[int, str | None]] = {}
    failures = 0
    logger.info(
        "Watching %s every %gs",
        ", ".join(str(catalog[d]._describe()["path"]) for d in WATCHED.values()),
        interval,
    )
    while True:
        log = database.ingestion_log()
        for pipeline, dataset in WATCHED.items():
            for source_file, obj in catalog.load(dataset).items():
                listing = (obj.size, obj.version)
                if seen_as.get(source_file) == listing:
                    continue
                seen_as[source_file] = listing
                if unchanged(log.get(source_file), obj):
                    continue
                logger.info("New object %s: running %s", obj.uri, pipeline)
                ingested = run_ingestion(project, env, pipeline, source_file)
                failures += not ingested
                if ingested and monitor and pipeline == "ingest_raw":
                    failures += not monitor_and_retrain(project, env)
        if once:
            return 1 if failures else 0
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default=None, help="Kedro environment (default: local)")
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between polls (default 5)"
    )
    parser.add_argument(
        "--once", action="store_true", help="one poll, then exit (non-zero if a run failed)"
    )
    parser.add_argument(
        "--no-monitor",
        dest="monitor",
        action="store_false",
        help="do not run the monitor (and retrain on its verdict) after a raw ingestion",
    )
    parser.add_argument(
        "--project", type=Path, default=Path.cwd(), help="project root (default: .)"
    )
    args = parser.parse_args(argv)
    from churn_kedro.config import configure_logging

    configure_logging(args.project.resolve() / "conf")
    try:
        return watch(args.project.resolve(), args.env, args.interval, args.once, args.monitor)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
