"""`make viz`: kedro-viz serves every pipeline of the project, the evaluation report included."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import time
import urllib.request

import pytest
from kedro_project import BIN, env, make_project

pytestmark = pytest.mark.slow


def _free_registered_port() -> int:
    """A free port below 49152: kedro-viz refuses the ephemeral range the OS hands out
    for port 0 ("Cannot allocate an open TCP port")."""
    for port in random.sample(range(20000, 49000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-49000")


def test_kedro_viz_shows_all_pipelines(tmp_path):
    project = make_project(tmp_path)
    port = _free_registered_port()
    server = subprocess.Popen(
        [
            str(BIN / "kedro"),
            "viz",
            "run",
            "--no-browser",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=project,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/main", timeout=5
                ) as response:
                    graph = json.load(response)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "kedro viz did not answer in 120 s"
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(20)
    pipelines = {p["id"] for p in graph["pipelines"]}
    assert {
        "retrain",
        "data_processing",
        "data_science",
        "model_promotion",
        "ingest_raw",
        "ingest_processed",
        "score",
    } <= pipelines
    datasets = {n["name"] for n in graph["nodes"] if n["type"] == "data"}
    assert {
        "roc_plot",
        "pr_plot",
        "calibration_plot",
        "gains_plot",
        "evaluation_metrics",
    } <= datasets
