"""The model registry: immutable versions, champion moves that lose no concurrent update,
rollback, benchmark rows appended without read-modify-write, clear errors."""

import io
import json
import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from seaweedfs import CREDENTIALS, seaweedfs_s3
from sklearn.dummy import DummyClassifier

from churn_kedro.registry import (
    BENCHMARKS_FILE,
    CHAMPION_FILE,
    MODEL_FILE,
    SERVING_FILE,
    ModelRegistry,
    RegistryError,
)
from churn_kedro.registry_cli import main as registry_cli

CLI = Path(sys.executable).parent / "churn-registry"
CONCURRENT = 16


def card(version):
    return {
        "version": version,
        "family": "dummy",
        "created_at": "2026-01-01T00:00:00Z",
        "threshold": 0.5,
        "metrics": {
            "roc_auc": 0.5,
            "roc_auc_ci": [0.4, 0.6],
            "brier": 0.2,
            "average_precision": 0.2,
        },
        "data": {"training_rows": 10, "source_file": "x"},
    }


def serving_bytes() -> bytes:
    """A whole .npz: the registry checks that the serving form is complete, not what it holds."""
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.arange(4.0))
    return buffer.getvalue()


def fill(registry: ModelRegistry, versions=("v1", "v2", "v3")) -> ModelRegistry:
    for version in versions:
        registry.register(
            version,
            DummyClassifier().fit([[0], [1]], [0, 1]),
            card(version),
            {SERVING_FILE: serving_bytes()},
        )
    return registry


@pytest.fixture
def registry(tmp_path):
    return fill(ModelRegistry(tmp_path / "registry"))


def test_a_version_without_serving_form_is_registered_but_not_promotable(registry):
    declined = {**card("v4"), "serving": {"servable": False, "reason": "no values for policy_type"}}
    registry.register("v4", None, declined)
    registry.register("v5", None, card("v5"))
    assert registry.versions() == ["v1", "v2", "v3", "v4", "v5"]
    with pytest.raises(RegistryError, match="cannot promote v4: .*no values for policy_type"):
        registry.promote("v4", "manual")
    with pytest.raises(RegistryError, match=f"cannot promote v5: it has no {SERVING_FILE}"):
        registry.promote("v5", "manual")
    assert registry.champion() is None


def test_an_incomplete_or_damaged_version_is_not_promotable(registry):
    registry.fs.rm(registry.version_path("v1", MODEL_FILE))
    with pytest.raises(RegistryError, match=f"cannot promote v1: it has no {MODEL_FILE}"):
        registry.promote("v1", "manual")
    whole = registry.fs.cat_file(registry.version_path("v2", SERVING_FILE))
    registry.fs.pipe_file(registry.version_path("v2", SERVING_FILE), whole[: len(whole) // 2])
    with pytest.raises(RegistryError, match=f"cannot promote v2: its {SERVING_FILE} is damaged"):
        registry.promote("v2", "manual")
    whole = registry.fs.cat_file(registry.version_path("v3", SERVING_FILE))
    flipped = whole[:100] + bytes(b ^ 0xFF for b in whole[100:108]) + whole[108:]
    registry.fs.pipe_file(registry.version_path("v3", SERVING_FILE), flipped)
    with pytest.raises(RegistryError, match=f"v3: its {SERVING_FILE} is damaged .*checksum"):
        registry.promote("v3", "manual")
    assert registry.champion() is None


def test_versions_are_immutable(registry):
    assert registry.versions() == ["v1", "v2", "v3"]
    with pytest.raises(RegistryError, match="already exists"):
        registry.register("v1", None, card("v1"))
    assert registry.load_model("v2").predict([[0]]).shape == (1,)


def test_promote_and_roll_back(registry):
    assert registry.champion() is None
    registry.promote("v1", "first")
    registry.promote("v3", "better")
    assert registry.champion()["version"] == "v3"
    assert registry.rollback()["version"] == "v1"
    assert "rolled back from v3" in registry.champion()["reason"]
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.promote("v9", "typo")


def test_champion_file_is_replaced_whole(registry):
    registry.promote("v1", "first")
    registry.promote("v2", "second")
    leftovers = [p for p in registry.fs.ls(registry.root) if p.endswith(".tmp")]
    assert leftovers == []
    assert (
        json.loads(registry.fs.cat_file(registry._path("champion.json")))["history"][0]["version"]
        == "v1"
    )


def test_cli_rollback_and_clear_errors(registry, capsys):
    root = registry.url
    assert registry_cli(["--registry", root, "rollback"]) == 2
    assert "has no champion.json" in capsys.readouterr().err
    assert registry_cli(["--registry", root, "promote", "v1"]) == 0
    assert registry_cli(["--registry", root, "promote", "v2"]) == 0
    assert registry_cli(["--registry", root, "rollback"]) == 0
    assert "champion is now v1" in capsys.readouterr().out
    assert registry_cli(["--registry", root, "list"]) == 0
    assert "* v1" in capsys.readouterr().out
    registry.fs.pipe_file(registry._path("champion.json"), b"{not json")
    assert registry_cli(["--registry", root, "status"]) == 2
    assert "champion.json is corrupted" in capsys.readouterr().err
    registry.fs.pipe_file(registry._path("champion.json"), b'{"promoted_at": "x"}')
    assert registry_cli(["--registry", root, "rollback"]) == 2
    assert "names no version" in capsys.readouterr().err


# ---- concurrency ------------------------------------------------------------------------


def _promote_at(start: float, root: str, options: dict | None, version: str, reason: str):
    time.sleep(max(0.0, start - time.time()))  # every worker starts at the same moment
    return ModelRegistry(root, options).promote(version, reason)["reason"]


def _append_at(start: float, root: str, options: dict | None, writer: int) -> None:
    time.sleep(max(0.0, start - time.time()))
    rows = [{"run_at": f"writer {writer}", "model": f"m{i}", "writer": writer} for i in range(5)]
    ModelRegistry(root, options).append_benchmarks(rows)


def promote_concurrently(root: str, options: dict | None = None, processes: bool = False):
    """CONCURRENT promotions at once; returns the reasons champion.json records."""
    pool = (
        ProcessPoolExecutor(CONCURRENT, mp_context=multiprocessing.get_context("fork"))
        if processes
        else ThreadPoolExecutor(CONCURRENT)
    )
    start = time.time() + (3.0 if processes else 0.5)
    with pool:
        done = pool.map(
            _promote_at,
            [start] * CONCURRENT,
            [root] * CONCURRENT,
            [options] * CONCURRENT,
            [f"v{1 + i % 3}" for i in range(CONCURRENT)],
            [f"promotion {i}" for i in range(CONCURRENT)],
        )
        assert sorted(done) == sorted(f"promotion {i}" for i in range(CONCURRENT))
    doc = ModelRegistry(root, options).champion()
    return [doc["reason"], *(entry["reason"] for entry in doc["history"])]


def append_concurrently(root: str, options: dict | None = None) -> pd.DataFrame:
    start = time.time() + 0.5
    with ThreadPoolExecutor(CONCURRENT) as pool:
        list(
            pool.map(
                _append_at,
                [start] * CONCURRENT,
                [root] * CONCURRENT,
                [options] * CONCURRENT,
                range(CONCURRENT),
            )
        )
    return ModelRegistry(root, options).benchmarks()


def assert_every_promotion_recorded(recorded):
    assert sorted(recorded) == sorted(f"promotion {i}" for i in range(CONCURRENT)), recorded


def test_concurrent_promotions_on_a_folder_are_all_recorded(registry):
    assert_every_promotion_recorded(promote_concurrently(registry.url, processes=True))
    assert [p for p in registry.fs.ls(registry.root) if p.endswith(".tmp")] == []


def test_concurrent_promotions_on_s3_are_all_recorded(s3_bucket):
    """On the moto server, which honours If-Match / If-None-Match on PUT."""
    root = f"s3://{s3_bucket}/registry"
    fill(ModelRegistry(root))
    assert_every_promotion_recorded(promote_concurrently(root))
    registry = ModelRegistry(root)
    previous = registry.champion()["history"][0]["version"]
    assert registry.rollback()["version"] == previous


@pytest.mark.slow
def test_concurrent_promotions_and_appends_on_seaweedfs():
    """The same on SeaweedFS, a real S3-compatible server that honours conditional PUTs."""
    bucket = "churn-registry-cas"
    with seaweedfs_s3(bucket) as environment:
        options = {
            "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "endpoint_url": environment["AWS_ENDPOINT_URL"],
        }
        root = f"s3://{bucket}/registry"
        fill(ModelRegistry(root, options))
        assert_every_promotion_recorded(promote_concurrently(root, options))
        table = append_concurrently(root, options)
        assert len(table) == 5 * CONCURRENT


def test_a_promotion_waits_for_the_lock_then_names_it(registry, monkeypatch):
    from filelock import FileLock

    import churn_kedro.registry

    monkeypatch.setattr(churn_kedro.registry, "CHAMPION_UPDATE_TIMEOUT_SECONDS", 0.3)
    lock = registry._path(f".{CHAMPION_FILE}.lock")
    with FileLock(lock):  # another promotion in progress, in this case forever
        with pytest.raises(RegistryError, match=f"{lock} stayed locked"):
            registry.promote("v1", "blocked")
    assert registry.promote("v1", "free")["version"] == "v1"


def test_rollbacks_after_concurrent_promotions_walk_the_whole_history(registry):
    promote_concurrently(registry.url)
    history = registry.champion()["history"]
    assert len(history) == CONCURRENT - 1
    for entry in history:
        assert registry.rollback("undo")["version"] == entry["version"]
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_concurrent_benchmark_appends_lose_no_row(where, tmp_path, request):
    if where == "s3":
        root = f"s3://{request.getfixturevalue('s3_bucket')}/registry"
    else:
        root = str(tmp_path / "registry")
    registry = ModelRegistry(root)
    registry.fs.makedirs(registry.root, exist_ok=True)
    # a registry written by older code: one benchmarks.csv, read first
    registry.fs.pipe_file(
        registry._path(BENCHMARKS_FILE), b"run_at,model,writer\nlegacy,old,-1\nlegacy,old2,-1\n"
    )
    table = append_concurrently(root)
    assert len(table) == 2 + 5 * CONCURRENT
    assert table["run_at"].iloc[:2].tolist() == ["legacy", "legacy"]
    assert sorted(table["writer"].value_counts().items()) == [
        (-1, 2),
        *((writer, 5) for writer in range(CONCURRENT)),
    ]
    registry.append_benchmarks([{"run_at": "last", "model": "m", "writer": 99, "extra": 1.5}])
    table = registry.benchmarks()
    assert table["run_at"].iloc[-1] == "last" and table["extra"].count() == 1


# ---- the CLI as users run it ------------------------------------------------------------


def cli(root, *args):
    result = subprocess.run(
        [str(CLI), "--registry", str(root), *args], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def test_cli_refuses_missing_and_incomplete_versions(registry):
    root = registry.url
    registry.fs.makedirs(registry.version_path("v4"))  # a card and nothing else
    registry.fs.pipe_file(registry.version_path("v4", "card.json"), json.dumps(card("v4")).encode())
    code, _, err = cli(root, "promote", "v9")
    assert code == 2 and "cannot promote v9: it is not in the registry" in err, err
    code, _, err = cli(root, "promote", "v4")
    assert code == 2 and f"cannot promote v4: it has no {MODEL_FILE}" in err, err
    assert cli(root, "promote", "v1")[0] == 0
    assert cli(root, "promote", "v2")[0] == 0
    registry.fs.rm(registry.version_path("v1", SERVING_FILE))
    code, _, err = cli(root, "rollback")
    assert code == 2 and f"cannot roll back to v1: it has no {SERVING_FILE}" in err, err
    registry.fs.rm(registry.version_path("v1"), recursive=True)
    code, _, err = cli(root, "rollback")
    assert code == 2 and "cannot roll back to v1: it is not in the registry" in err, err
    assert registry.champion()["version"] == "v2"


def test_cli_names_the_malformed_file(registry):
    root = registry.url
    champion = registry.fs.unstrip_protocol(registry._path(CHAMPION_FILE))
    cases = [
        ({"version": "v1", "history": "v0"}, "its history is not a list"),
        ({"version": "v1", "history": [{"promoted_at": "x"}]}, "history entry 0 names no version"),
    ]
    for doc, problem in cases:
        registry.fs.pipe_file(registry._path(CHAMPION_FILE), json.dumps(doc).encode())
        for command in (["status"], ["rollback"], ["promote", "v2"]):
            code, _, err = cli(root, *command)
            assert code == 2 and f"{champion} is corrupted: {problem}" in err, (command, err)

    registry.fs.rm(registry._path(CHAMPION_FILE))
    assert cli(root, "promote", "v3")[0] == 0
    no_metrics = {k: v for k, v in card("v3").items() if k != "metrics"}
    card_file = registry.version_path("v3", "card.json")
    registry.fs.pipe_file(card_file, json.dumps(no_metrics).encode())
    for command in ("status", "list"):
        code, _, err = cli(root, command)
        assert code == 2 and f"{card_file} has no 'metrics' field" in err, err

    registry.fs.pipe_file(card_file, json.dumps(card("v3")).encode())
    registry.append_benchmarks([{"run_at": "r", "snapshot": "s", "model": "m", "role": "x"}])
    (run,) = registry.benchmark_files()
    registry.fs.pipe_file(run, b'run_at,model\n"r,m\n1,2,3,4\n')
    for command in ("status", "benchmarks"):
        code, _, err = cli(root, command)
        assert code == 2 and f"{run} is corrupted" in err, err
    registry.fs.pipe_file(run, b"run_at,snapshot\nr,s\n")  # readable, but lacks columns
    code, _, err = cli(root, "status")
    assert code == 2 and f"{run} has no 'model' column" in err, err


def test_cli_prints_every_run_as_one_table(registry):
    registry.fs.pipe_file(registry._path(BENCHMARKS_FILE), b"run_at,model\nold,a\n")
    registry.append_benchmarks([{"run_at": "new", "model": "b"}])
    code, out, _ = cli(registry.url, "benchmarks")
    assert code == 0 and pd.read_csv(io.StringIO(out))["run_at"].tolist() == ["old", "new"]


# ---- what the API does with a damaged or vanished champion ------------------------------


@pytest.fixture
def served(tmp_path):
    from serving_fixtures import build_registry

    return build_registry(
        tmp_path / "served", ("logistic_regression",), promote="v1-logistic_regression"
    )


def test_a_damaged_serving_form_is_a_503_naming_the_version_and_the_problem(served):
    from churn_kedro.serving.app import Application

    path = served.version_path("v1-logistic_regression", SERVING_FILE)
    whole = served.fs.cat_file(path)
    middle = len(whole) // 2
    damages = {
        "truncated": (whole[:middle], "BadZipFile"),
        "overwritten in the middle": (
            whole[:middle] + bytes(64) + whole[middle + 64 :],
            "cannot be read",
        ),
    }
    for damaged, problem in damages.values():
        served.fs.pipe_file(path, damaged)
        response = Application(served.url, refresh_seconds=0).handle("GET", "/health")
        message = response.body["error"]["message"]
        assert response.status == 503
        assert "v1-logistic_regression" in message and SERVING_FILE in message, message
        assert problem in message and "roll back" in message, message


def test_a_running_server_keeps_its_model_when_champion_json_is_deleted(served):
    from serving_fixtures import instances

    from churn_kedro.serving.app import Application

    app = Application(served.url, refresh_seconds=0)
    assert app.handle("GET", "/health").body == {
        "status": "ok",
        "model_version": "v1-logistic_regression",
    }
    served.fs.rm(served._path(CHAMPION_FILE))
    health = app.handle("GET", "/health")
    assert health.status == 200 and health.body["model_version"] == "v1-logistic_regression"
    assert "champion.json is missing" in health.body["warning"]
    predict = app.handle(
        "POST",
        "/predict",
        {"content-type": "application/json"},
        json.dumps({"instances": instances(2)}),
    )
    assert predict.status == 200 and predict.body["model_version"] == "v1-logistic_regression"
    fresh = Application(served.url, refresh_seconds=0).handle("GET", "/health")
    assert fresh.status == 503 and "no champion" in fresh.body["error"]["message"]
    served.promote("v1-logistic_regression", "restored")
    assert "warning" not in app.handle("GET", "/health").body
