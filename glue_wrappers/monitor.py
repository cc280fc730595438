"""Glue 5.0 (Python 3.11) job script: `kedro run --pipeline monitor` from the installed
churn_kedro wheel, after each raw ingestion. Arguments: see churn_kedro.glue_job.

The verdict is published by the run (CloudWatch metric and EventBridge event, see
conf/aws/catalog_monitor.yml); a `retrain` verdict is a successful job here, not a
failure: the event, not this job's status, starts the retraining."""

from churn_kedro.glue_job import main
from churn_kedro.pipelines.monitor.nodes import RetrainRequired

if __name__ == "__main__":
    try:
        main("monitor", __file__)
    except RetrainRequired:
        pass
