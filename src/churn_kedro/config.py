"""The project's configuration loader: Kedro's OmegaConfigLoader with one fix.

Kedro merges runtime parameters (``kedro run --params a.b=1``) into the base and the
environment's parameters separately, then lets the environment replace base's
top-level keys. With an environment that has parameters of its own (conf/telco/),
``--params data_science.cv_folds=3`` would therefore replace the whole
``data_science`` block. Here runtime parameters are merged, deeply, once, over the
merged environments: they change exactly the keys they name, in every environment.
"""

from __future__ import annotations

from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf


class ConfigLoader(OmegaConfigLoader):
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
