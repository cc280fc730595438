"""A throwaway copy of the project for end-to-end tests: the real conf, the installed
package, its own data folder; commands run as a user types them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Small search budgets keep an end-to-end retrain under a minute on 2 cores.
FAST_RETRAIN = (
    "data_science.cv_folds=3,"
    "data_science.families.logistic_regression.n_trials=3,"
    "data_science.families.random_forest.n_trials=2,"
    "data_science.families.random_forest.search_space.n_estimators.high=150,"
    "data_science.families.hist_gradient_boosting.n_trials=2,"
    "data_science.families.hist_gradient_boosting.search_space.max_iter.high=150,"
    "data_science.families.catboost.n_trials=2,"
    "data_science.families.catboost.search_space.iterations.high=250"
)


def make_project(root: Path) -> Path:
    """Copy conf/ (without local/) and the project metadata into ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir(exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy2(REPO / name, root / name)
    (root / "src").mkdir(exist_ok=True)  # Kedro checks it exists; the package is installed
    (root / "data" / "01_raw").mkdir(parents=True, exist_ok=True)
    return root


def env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        **extra,
    }


def run(
    project: Path, *args: str, check: bool = True, **extra_env: str
) -> subprocess.CompletedProcess:
    """Run a console script of the venv (kedro, churn-registry, ...) in the project copy."""
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=project,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def retrain(
    project: Path, *extra: str, check: bool = True, **extra_env: str
) -> subprocess.CompletedProcess:
    return run(
        project,
        "kedro",
        "run",
        "--pipelines",
        "retrain",
        "--params",
        FAST_RETRAIN,
        *extra,
        check=check,
        **extra_env,
    )


def generate(project: Path, *args: str, out: str = "data/01_raw") -> None:
    run(project, "churn-generate", "--out", out, "--truth-dir", "data/truth", *args)
