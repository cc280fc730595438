"""Project settings (https://docs.kedro.org/en/stable/configure/configuration_basics/)."""

from omegaconf.resolvers import oc

from churn_kedro.config import ConfigLoader

CONFIG_LOADER_CLASS = ConfigLoader
# The aws environment reads its bucket from the environment (CHURN_BUCKET), so the
# oc.env resolver is enabled for every kind of configuration, not only credentials.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"oc.env": oc.env},
}
