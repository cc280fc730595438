"""The README's "Bring your own dataset" recipe, run exactly as written: each command of
its bash block in a throwaway copy of the project, the last one (the server) in the
background until it answers."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import pytest
from conftest import free_port
from kedro_project import BIN, REPO, env, make_project

pytestmark = pytest.mark.slow


def recipe_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- recipe -->\n```bash\n(.*?)```", readme, re.S).group(1)
    commands, lines = [], iter(block.splitlines())
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        if "<<'YAML'" in line:  # a here-document: the command runs to its end marker
            body = [line]
            for more in lines:
                body.append(more)
                if more == "YAML":
                    break
            line = "\n".join(body)
        commands.append(line)
    return commands


def test_the_readme_recipe_takes_a_new_dataset_from_files_to_the_api(tmp_path):
    project = make_project(tmp_path / "project")
    *steps, serve = recipe_commands()
    assert serve.startswith("python -m churn_kedro.serving --env mydata")
    shell_env = env(PATH=f"{BIN}:/usr/bin:/bin")
    for command in steps:
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=shell_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, (
            f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
        if command.startswith("churn-registry"):
            assert "Champion:" in result.stdout

    assert (project / "data/mydata/churn.db").is_file()  # its own database
    assert not (project / "data/churn.db").exists()
    assert (
        json.loads((project / "data/mydata/08_reporting/score_report.json").read_text())[
            "rows_scored"
        ]
        > 2500
    )

    port = free_port()
    server = subprocess.Popen(
        ["bash", "-c", serve.replace("--port 8080", f"--port {port}")],
        cwd=project,
        env=shell_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=5) as r:
                    card = json.loads(r.read())
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no answer"
                time.sleep(0.5)
        assert card["card"]["schema"]["id_column"] == "CustomerID"
    finally:
        server.terminate()
        server.wait(timeout=30)
