"""Glue 5.0 entry point of the daily retraining: ``kedro run --pipeline retrain --env aws``.

Glue runs this script with the job's arguments (infra/template.yaml, RetrainJob):
``--env aws --bucket <bucket>`` plus its own (``--JOB_NAME``, ``--TempDir``, ...). The
project arrives as the wheel in ``--additional-python-modules``; its configuration is
packaged in the wheel's installation or passed with ``--conf-source`` (a folder, a
``.tar.gz`` or an ``s3://`` prefix). Optional ``--params`` takes Kedro's ``a.b=1,c=2``
form, e.g. a smaller search budget for a rehearsal.

Exits non-zero when the run fails, so Glue marks the job run FAILED.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

PIPELINE = "retrain"


def job_arguments(argv: list[str]) -> argparse.Namespace:
    """Our arguments out of Glue's command line (Glue adds arguments of its own, which
    are ignored). awsglue's getResolvedOptions cannot take optional arguments, so plain
    argparse reads the same ``--name value`` pairs on Glue and off it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="aws", help="Kedro environment")
    parser.add_argument("--bucket", required=True, help="the data bucket (CHURN_BUCKET)")
    parser.add_argument("--conf-source", default=None, help="configuration folder, archive or s3:// prefix")
    parser.add_argument("--params", default=None, help="runtime parameters, Kedro's a.b=1,c=2 form")
    args, _glue_own = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    args = job_arguments(sys.argv[1:] if argv is None else argv)
    os.environ["CHURN_BUCKET"] = args.bucket  # conf/aws/globals.yml: s3://${CHURN_BUCKET}/...
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from churn_kedro.__main__ import main as kedro_main

    command = ["--pipeline", PIPELINE, "--env", args.env]
    if args.conf_source:
        command += ["--conf-source", args.conf_source]
    if args.params:
        command += ["--params", args.params]
    try:
        # The packaged project's own `run` command, as `python -m churn_kedro run ...`.
        kedro_main(command, standalone_mode=False)
    except SystemExit as exc:  # click's exit on a usage error
        return int(exc.code or 0)
    except Exception:
        logging.getLogger(__name__).exception("kedro run --pipeline %s --env %s failed", PIPELINE, args.env)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
