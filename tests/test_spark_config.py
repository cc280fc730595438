"""The engine is chosen by the environment: base never imports pyspark; the spark
environments carry a session configuration and the Spark datasets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LOAD = """
import sys
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
bootstrap_project({repo!r})
with KedroSession.create(project_path={repo!r}, env={env!r}) as session:
    context = session.load_context()
    try:
        master = context.config_loader["spark"].get("spark.master")
    except Exception:
        master = None
    print(type(context.catalog.get("raw_objects")).__name__, master,
          "pyspark" in sys.modules)
"""


def load(env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", LOAD.format(repo=str(REPO), env=env)],
        capture_output=True,
        text=True,
        timeout=300,
        env={"KEDRO_DISABLE_TELEMETRY": "true", "PATH": "/usr/bin:/bin", "CHURN_BUCKET": "b"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()[-3:]


def test_base_and_aws_never_import_pyspark():
    assert load("local") == ["SnapshotObjectsDataset", "None", "False"]
    assert load("aws") == ["SnapshotObjectsDataset", "None", "False"]
