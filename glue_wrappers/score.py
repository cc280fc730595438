"""Glue 5.0 (Python 3.11) job script: `kedro run --pipeline score` from the installed
churn_kedro wheel (the Spark scoring job runs it with --env aws_spark). Arguments and exit
status: see churn_kedro.glue_job."""

from churn_kedro.glue_job import main

if __name__ == "__main__":
    main("score", __file__)
