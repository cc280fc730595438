"""MLflow tracking of retrain runs: on with one parameter, a real local MLflow store;
off by default, when MLflow is not even imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from kedro_project import FAST_RETRAIN, REPO, env, make_project, retrain

pytestmark = pytest.mark.slow

SAMPLE = REPO / "data/01_raw/insurance_data_2026-11-01_06-00-00.csv"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("tracking") / "project")
    shutil.copy(SAMPLE, root / "data/01_raw")
    return root


def test_a_retrain_with_tracking_on_is_one_mlflow_run_with_metrics_and_artifacts(project):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{project}/mlflow.db"
    retrain(
        project,
        "--params",
        f"tracking.mlflow.enabled=true,tracking.mlflow.tracking_uri={store}",
    )

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("churn-retrain")
    (run,) = client.search_runs([experiment.experiment_id])
    registry = project / "data/06_models/registry"
    (version,) = [p.name for p in (registry / "versions").iterdir()]
    card = json.loads((registry / "versions" / version / "card.json").read_text())
    assert run.data.tags["registry_version"] == version == run.info.run_name
    assert run.data.tags["decision"] == "promoted"  # the first run has no champion to beat
    assert run.data.tags["challenger_family"] == card["family"]
    family = card["family"]
    assert run.data.metrics[f"{family}.holdout_roc_auc"] == pytest.approx(
        card["metrics"]["roc_auc"]
    )
    # every family's CV score; holdout metrics for the challenger, the only family refitted
    for name in ("logistic_regression", "random_forest", "hist_gradient_boosting"):
        assert f"{name}.cv_roc_auc" in run.data.metrics
        assert (f"{name}.holdout_brier" in run.data.metrics) is (name == family)
    assert run.data.params["data_science.cv_folds"] == "3"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model_card.json", "decision.txt", "roc.png", "calibration.png"} <= artifacts


def test_with_tracking_off_mlflow_is_not_imported(project):
    script = f"""
import sys
from pathlib import Path
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
bootstrap_project(Path.cwd())
params = {{k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in "{FAST_RETRAIN}".split(","))}}
with KedroSession.create(project_path=Path.cwd(), runtime_params=params) as session:
    session.run(pipeline_names=["retrain"])
print("mlflow imported:", "mlflow" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mlflow imported: False" in result.stdout
