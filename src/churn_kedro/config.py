"""The project's configuration: Kedro's OmegaConfigLoader with one fix, and the one
logging configuration for entry points other than ``kedro run``.

Kedro merges runtime parameters (``kedro run --params a.b=1``) into the base and the
environment's parameters separately, then lets the environment replace base's
top-level keys. With an environment that has parameters of its own (conf/telco/),
``--params data_science.cv_folds=3`` would therefore replace the whole
``data_science`` block. Here runtime parameters are merged, deeply, once, over the
merged environments: they change exactly the keys they name, in every environment.
"""

from __future__ import annotations

import logging.config
import os
import tarfile
from pathlib import Path
from typing import Any

import yaml
from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf


class ConfigLoader(OmegaConfigLoader):
    @staticmethod
    def _register_new_resolvers(resolvers: dict[str, Any]) -> None:
        # OmegaConf's current API: Kedro's own registration of custom resolvers uses the
        # deprecated register_new_resolver, which warns on every run.
        for name, resolver in resolvers.items():
            OmegaConf.register_resolver(name, resolver, replace=True)

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key != "parameters" or not self.runtime_params:
            return super().__getitem__(key)
        runtime, self.runtime_params = self.runtime_params, {}
        try:
            parameters = super().__getitem__(key)
        finally:
            self.runtime_params = runtime
        merged = OmegaConf.create(parameters)
        for name, value in runtime.items():  # "a.b" keys (the CLI's form) and nested dicts alike
            OmegaConf.update(merged, name, value, merge=True)
        return OmegaConf.to_container(merged, resolve=True)


def logging_config(conf_source: str | Path) -> dict[str, Any]:
    """The project's one logging configuration, ``logging.yml`` of a conf folder or of the
    archive ``kedro package`` makes of it (what the Glue jobs get); ``$KEDRO_LOGGING_CONFIG``
    wins, as it does for ``kedro run``."""
    override = os.environ.get("KEDRO_LOGGING_CONFIG")
    source = Path(override or conf_source)
    if source.is_dir():
        source = source / "logging.yml"
    if source.suffix in (".yml", ".yaml"):
        return yaml.safe_load(source.read_text())
    with tarfile.open(source) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("logging.yml"))
        return yaml.safe_load(archive.extractfile(member).read())


def configure_logging(conf_source: str | Path) -> dict[str, Any]:
    """Apply :func:`logging_config` (entry points that start without a Kedro session: the
    watcher, the local API server, the Glue jobs); returns it."""
    config = logging_config(conf_source)
    logging.config.dictConfig(config)
    return config
