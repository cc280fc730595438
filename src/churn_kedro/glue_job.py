"""What the Glue wrappers (glue_wrappers/*.py) run: one Kedro pipeline, as a Glue 5.0
Python job, from the installed wheel.

Job arguments (Glue passes its own too, e.g. --JOB_NAME, --TempDir: they are ignored):

  --bucket BUCKET          the data bucket (CHURN_BUCKET of the aws environment)
  --db-secret-id ID        the Secrets Manager secret (id or ARN) holding the RDS
                           connection; only its id travels, never its value
  --env aws                the Kedro environment (default aws; aws_spark in the Spark jobs)
  --conf-source URI        the configuration: a folder or conf-churn_kedro.tar.gz (made by
                           `kedro package`), local or s3://; default: conf/ beside glue_wrappers/
  --object-key KEY         ingest only this object (the key of the event's object)
  --force true             replace an object whose content changed since it was loaded
  --params K=V,K2=V2       further runtime parameters, as `kedro run --params`

  --master-secret-id ID    (bootstrap_database.py only) the RDS master user's secret
  --db-ca-bundle URI       the CA bundle that verifies the database's TLS certificate (the
                           RDS global bundle deploy.sh uploads), local or s3://

Exit status (see :func:`main`): a run that succeeds ends the script normally, with no
``sys.exit`` at all, so Glue reports SUCCEEDED whatever it makes of ``SystemExit(0)``
in a Spark job's driver; a failed run exits 1, which Glue reports as FAILED.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from churn_kedro.config import configure_logging

logger = logging.getLogger("churn_kedro.glue_job")

PACKAGE = "churn_kedro"


def parse_arguments(argv: list[str]) -> dict[str, Any]:
    """The job's arguments; getResolvedOptions on Glue, argparse elsewhere. Unknown
    arguments (Glue's own) are tolerated either way."""
    # allow_abbrev=False: Glue passes arguments of its own (--conf among them), which a
    # prefix match would take for ours (--conf for --conf-source).
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--db-secret-id", dest="db_secret_id")
    parser.add_argument("--env", default="aws")
    parser.add_argument("--conf-source", dest="conf_source")
    parser.add_argument("--object-key", dest="object_key")
    parser.add_argument("--force", default="false")
    parser.add_argument("--params", default="")
    parser.add_argument("--db-ca-bundle", dest="db_ca_bundle")
    parser.add_argument("--master-secret-id", dest="master_secret_id")
    options = vars(parser.parse_known_args(argv)[0])
    try:
        from awsglue.utils import getResolvedOptions  # present on Glue only
    except ImportError:
        return options
    # Glue's parser is the authority there; it skips args[0] (it expects sys.argv, script first)
    options.update(getResolvedOptions([sys.argv[0], *argv], ["bucket"]))
    return options


def runtime_params(options: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in filter(None, options["params"].split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--params: {item!r} is not key=value")
        params[key.strip()] = yaml.safe_load(value)
    if str(options["force"]).lower() in ("1", "true", "yes"):
        params["force"] = True
    if options["object_key"]:
        params["ingestion.only"] = options["object_key"]
    return params


def local_copy(uri: str) -> str:
    """A local path for ``uri``: an s3:// (or other fsspec) object is downloaded first."""
    if "://" not in uri:
        return uri
    import fsspec

    local = Path(tempfile.mkdtemp(prefix="churn-glue-")) / uri.rstrip("/").rsplit("/", 1)[-1]
    fsspec.filesystem(uri.split("://", 1)[0]).get(uri, str(local), recursive=True)
    return str(local)


def conf_source(option: str | None, script: Path) -> str:
    """A local folder or archive Kedro can read: an s3:// archive is downloaded first."""
    if option is None:
        beside = script.resolve().parent.parent / "conf"
        if not beside.is_dir():
            raise SystemExit(
                "no configuration: pass --conf-source s3://.../conf-churn_kedro.tar.gz"
            )
        return str(beside)
    return local_copy(option)


def run_pipeline(pipeline: str, argv: list[str], script: str) -> int:
    """Run ``pipeline`` as a Glue job would; returns the process exit code."""
    options = parse_arguments(argv)
    source = conf_source(options["conf_source"], Path(script))
    logging_conf = configure_logging(source)
    os.environ["CHURN_BUCKET"] = options["bucket"]
    if options["db_secret_id"]:  # the id; the engine factory reads the value
        os.environ["CHURN_DB_SECRET"] = options["db_secret_id"]
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    try:
        if options["db_ca_bundle"]:
            os.environ["CHURN_DB_CA_BUNDLE"] = local_copy(options["db_ca_bundle"])
        from kedro.framework.project import LOGGING, configure_project
        from kedro.framework.session import KedroSession

        configure_project(PACKAGE)  # the installed wheel is the project: no checkout needed
        LOGGING.configure(logging_conf)  # conf/logging.yml, not Kedro's rich console
        with KedroSession.create(
            project_path=Path.cwd(),
            env=options["env"],
            conf_source=source,
            runtime_params=runtime_params(options),
        ) as session:
            session.run(pipeline_names=[pipeline])
    except SystemExit:
        raise
    except Exception as exc:
        logger.error("%s failed: %s", pipeline, exc)
        return 1
    logger.info("%s completed", pipeline)
    return 0


def main(pipeline: str, script: str) -> None:
    """The wrappers' entry point: returns when the run succeeded, exits 1 when it failed."""
    if run_pipeline(pipeline, sys.argv[1:], script) != 0:
        sys.exit(1)


def bootstrap_main() -> None:
    """glue_wrappers/bootstrap_database.py: the application user of --db-secret-id, created
    by the master user of --master-secret-id (churn_kedro.database.bootstrap_app_user)."""
    from churn_kedro import database

    options = parse_arguments(sys.argv[1:])
    configure_logging(conf_source(options["conf_source"], Path(sys.argv[0])))
    if not (options["master_secret_id"] and options["db_secret_id"]):
        raise SystemExit("bootstrap: pass --master-secret-id and --db-secret-id")
    try:
        ca = local_copy(options["db_ca_bundle"]) if options["db_ca_bundle"] else None
        user = database.bootstrap_app_user(options["master_secret_id"], options["db_secret_id"], ca)
    except Exception as exc:  # the engine hides SQL parameters: no password in the message
        logger.error("bootstrap failed: %s", exc)
        sys.exit(1)
    logger.info("application user %s ready", user)
