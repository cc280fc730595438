"""Glue 5.0 (Python 3.11) job script: `kedro run --pipeline ingest_raw` from the installed
churn_kedro wheel (--additional-python-modules). Arguments: see churn_kedro.glue_job."""

import sys

from churn_kedro.glue_job import run_pipeline

if __name__ == "__main__":
    sys.exit(run_pipeline("ingest_raw", sys.argv[1:], __file__))
