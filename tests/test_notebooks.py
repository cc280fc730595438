"""Both notebooks execute, top to bottom, on the bundled sample snapshot."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from kedro_project import FAST_RETRAIN, REPO, make_project
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

SAMPLE = sorted((REPO / "data/01_raw").glob("insurance_data_*.csv"))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    assert SAMPLE, "the bundled sample snapshot is missing from data/01_raw"
    root = make_project(tmp_path_factory.mktemp("notebooks"))
    shutil.copy2(SAMPLE[-1], root / "data/01_raw" / SAMPLE[-1].name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root


def execute(project, name, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    fast = dict(item.split("=") for item in FAST_RETRAIN.split(","))
    monkeypatch.setenv(
        "CHURN_RUNTIME_PARAMS",
        json.dumps({k: float(v) if "." in v else int(v) for k, v in fast.items()}),
    )
    notebook = nbformat.read(project / "notebooks" / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(project / "notebooks")}},
    ).execute()
    return notebook


def outputs(notebook) -> str:
    return "\n".join(
        out.get("text", "") + json.dumps(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def test_eda_notebook(project, monkeypatch):
    text = outputs(execute(project, "eda.ipynb", monkeypatch))
    assert SAMPLE[-1].stem in text and "rows_rejected" in text and "churn rate" in text


def test_train_eval_deploy_notebook(project, monkeypatch):
    notebook = execute(project, "train_eval_deploy.ipynb", monkeypatch)
    text = outputs(notebook)
    assert "promoted: no champion yet" in text
    images = [
        o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 4
    assert "churn_probability" in text
    assert (project / "data/06_models/registry/champion.json").exists()
