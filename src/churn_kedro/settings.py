"""Project settings (https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

import warnings

from omegaconf.resolvers import oc

from churn_kedro.config import ConfigLoader
from churn_kedro.database import secret_reference
from churn_kedro.hooks import MlflowTracking
from churn_kedro.spark.session import SparkHooks

HOOKS = (
    # Creates the SparkSession in environments that have a spark.yml (conf/spark,
    # conf/aws_spark); elsewhere it does nothing and pyspark is never imported.
    SparkHooks(),
    # MLflow tracking of retrain runs: off unless tracking.mlflow.enabled (parameters.yml)
    MlflowTracking(),
)

CONFIG_LOADER_CLASS = ConfigLoader
# The aws environment reads its bucket from the environment (CHURN_BUCKET), so the
# oc.env resolver is enabled for every kind of configuration, not only credentials.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"spark": ["spark*", "spark*/**"]},
    # db_secret: where the RDS connection is (a Secrets Manager secret id and a CA bundle),
    # never its value (conf/aws/credentials.yml)
    "custom_resolvers": {"oc.env": oc.env, "db_secret": secret_reference},
}

# Kedro 1.7 registers its own globals and runtime_params resolvers through OmegaConf's
# deprecated register_new_resolver on every run; the warning is about Kedro's code, not
# the project's, so it is silenced here for every entry point (ours are registered with
# register_resolver by ConfigLoader).
warnings.filterwarnings(
    "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
)
