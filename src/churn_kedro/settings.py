"""Project settings (https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

from omegaconf.resolvers import oc

from churn_kedro.config import ConfigLoader
from churn_kedro.database import database_url_from_secret
from churn_kedro.spark.session import SparkHooks

# Creates the SparkSession in environments that have a spark.yml (conf/spark, conf/aws_spark);
# elsewhere it does nothing and pyspark is never imported.
HOOKS = (SparkHooks(),)

CONFIG_LOADER_CLASS = ConfigLoader
# The aws environment reads its bucket from the environment (CHURN_BUCKET), so the
# oc.env resolver is enabled for every kind of configuration, not only credentials.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {"spark": ["spark*", "spark*/**"]},
    # db_secret: the RDS URL from a Secrets Manager secret id (conf/aws/credentials.yml)
    "custom_resolvers": {"oc.env": oc.env, "db_secret": database_url_from_secret},
}
