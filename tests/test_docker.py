"""The Lambda image without a Docker engine: lint the Dockerfile, check its structure,
install docker/requirements.txt exactly as its RUN line does (binary wheels for the base
image's platform tags) into an empty folder, lay out the COPY'd sources, and run the
handler from that folder alone (`python -S`) on REST v1 and HTTP API v2 events against
a real registry, on a local folder and on S3; and run the image's CMD as the base image
does, through the Lambda runtime interface client, against a stand-in of the Runtime API."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from serving_fixtures import build_registry
from test_serving import GOOD, http_v2_event, rest_v1_event

from churn_kedro.registry import SERVING_FILE

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
REQUIREMENTS = REPO / "docker" / "requirements.txt"
HANDLER = "churn_kedro.serving.lambda_handler.handler"
MAX_GLIBC = (2, 26)  # Amazon Linux 2, the python:3.11 base


def structure() -> list[dict]:
    from dockerfile_parse import DockerfileParser

    return DockerfileParser(path=str(DOCKERFILE)).structure


def instructions(name: str) -> list[str]:
    return [i["value"] for i in structure() if i["instruction"] == name]


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure():
    (base,) = instructions("FROM")
    assert base == "public.ecr.aws/lambda/python:3.11"
    cmd = instructions("CMD")
    assert len(cmd) == 1 and json.loads(cmd[0]) == [HANDLER]  # exec form: the handler itself
    env = " ".join(instructions("ENV"))
    assert "CHURN_REGISTRY=" in env and "CHURN_CHAMPION_REFRESH_SECONDS=" in env
    for value in instructions("COPY"):
        *sources, _ = shlex.split(value)
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such path in the build context"
    (run,) = instructions("RUN")
    assert "--only-binary=:all:" in run and "-r /tmp/requirements.txt" in run
    # the comment says why the base and pins are what they are
    text = DOCKERFILE.read_text()
    assert "glibc 2.26" in text and "manylinux" in text


def test_requirements_are_pinned_and_serving_only():
    lines = [
        ln.strip()
        for ln in REQUIREMENTS.read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.\-+]*", ln) for ln in lines), lines
    names = {ln.split("==")[0].lower() for ln in lines}
    assert {"numpy", "fsspec", "s3fs"} <= names
    # nor the local server: the image answers Lambda events only
    assert not names & {
        "pandas",
        "scikit-learn",
        "catboost",
        "kedro",
        "joblib",
        "scipy",
        "waitress",
    }
    assert "://" not in REQUIREMENTS.read_text()


def pip_arguments() -> list[str]:
    """The Dockerfile's pip install options (platform tags, ABI, binary only)."""
    (run,) = instructions("RUN")
    words = shlex.split(run.split("&&")[0].replace("\\\n", " "))
    words = words[words.index("install") + 1 :]
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word in ("--target", "-r"):
            skip = True
            continue
        out.append(word)
    return out


def install_for_the_image(request, name: str, requirements: Path) -> Path:
    """``requirements`` installed as the image's RUN line does, into an empty folder;
    cached in .pytest_cache by the content of the requirements and options."""
    arguments = pip_arguments()
    key = hashlib.sha256((requirements.read_text() + " ".join(arguments)).encode()).hexdigest()[:16]
    cache = Path(request.config.cache.mkdir(name))
    target = cache / key
    if not (target / ".complete").exists():
        partial = cache / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                *arguments,
                "--target",
                str(partial),
                "-r",
                str(requirements),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (partial / ".complete").write_text(" ".join(arguments))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


@pytest.fixture(scope="module")
def site_packages(request) -> Path:
    """docker/requirements.txt as the image installs it into ${LAMBDA_TASK_ROOT}."""
    return install_for_the_image(request, "docker-site-packages", REQUIREMENTS)


# The base image runs the CMD through its own copy of the Lambda runtime interface client
# (/lambda-entrypoint.sh: python -m awslambdaric <CMD>); this is a recent one, pinned.
RUNTIME_INTERFACE_CLIENT = "awslambdaric==4.2.2\nsimplejson==4.3.0\nsnapshot-restore-py==1.0.0\n"


@pytest.fixture(scope="module")
def runtime_interface_client(request, tmp_path_factory) -> Path:
    requirements = tmp_path_factory.mktemp("ric") / "requirements.txt"
    requirements.write_text(RUNTIME_INTERFACE_CLIENT)
    return install_for_the_image(request, "docker-awslambdaric", requirements)


def test_install_is_exactly_the_pins_for_the_base_glibc(site_packages):
    pinned = {
        ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1]
        for ln in REQUIREMENTS.read_text().splitlines()
        if ln and not ln.startswith("#")
    }
    installed = {}
    for info in site_packages.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[name.lower().replace("_", "-")] = version
        # a wheel may carry several tags; one of them must load on the base's glibc
        fits = []
        for tag in re.findall(r"^Tag: (.+)$", (info / "WHEEL").read_text(), re.M):
            platform = tag.split("-")[-1]
            glibc = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
            fits.append(
                platform in ("any", "manylinux2014_x86_64")
                or bool(glibc and (int(glibc.group(1)), int(glibc.group(2))) <= MAX_GLIBC)
            )
        assert any(fits), f"{info.name}: no wheel tag for glibc <= 2.26 / x86_64"
    assert installed == pinned  # nothing unpinned came in as a dependency


@pytest.fixture
def task_root(tmp_path) -> Path:
    """The image's ${LAMBDA_TASK_ROOT} sources, laid out as the COPY lines say."""
    root = tmp_path / "task"
    for value in instructions("COPY"):
        *sources, destination = shlex.split(value)
        if not destination.startswith("${LAMBDA_TASK_ROOT}"):
            continue
        dest = root / destination.removeprefix("${LAMBDA_TASK_ROOT}").strip("/")
        for source in sources:
            path = REPO / source
            if path.is_dir():
                shutil.copytree(
                    path, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
                )
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / path.name)
    return root


RUN_EVENTS = """
import json, sys
import churn_kedro.serving.lambda_handler as module
handler = module.handler
out = [handler(event, None) for event in json.load(sys.stdin)]
build_time = ("churn_kedro.export", "churn_kedro.contracts", "churn_kedro.schema", "churn_kedro.pipelines")
heavy = sorted(
    m for m in sys.modules
    if m in ("pandas", "sklearn", "kedro", "catboost", "joblib") or m.startswith(build_time)
)
print(json.dumps({"responses": out, "heavy": heavy, "numpy": sys.modules["numpy"].__file__}))
"""


def run_handler(task_root: Path, site: Path, registry: str, events: list[dict], **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-S", "-c", RUN_EVENTS],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PYTHONPATH": f"{task_root}{os.pathsep}{site}",
            "CHURN_REGISTRY": registry,
            "PATH": "/usr/bin:/bin",
            "HOME": str(task_root),
            **env,
        },
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def events() -> list[dict]:
    body = json.dumps({"instances": [GOOD, {**GOOD, "customer_id": 8, "policy_type": None}]})
    return [
        rest_v1_event("POST", "/predict", body),
        http_v2_event("POST", "/predict", body),
        rest_v1_event("GET", "/health", None),
        http_v2_event("GET", "/model", None),
        http_v2_event("POST", "/predict", json.dumps({"instances": [{**GOOD, "age": "x"}]})),
    ]


def check(answer: dict, version: str, site: Path) -> None:
    assert answer["heavy"] == []
    assert answer["numpy"].startswith(str(site))
    check_responses(answer["responses"], version)


def check_responses(responses: list[dict], version: str) -> None:
    """The answers to events(), in order."""
    predict_v1, predict_v2, health, model, bad = responses
    for response in (predict_v1, predict_v2):
        assert response["statusCode"] == 200, response
        body = json.loads(response["body"])
        assert body["model_version"] == version and len(body["predictions"]) == 2
    assert json.loads(predict_v1["body"]) == json.loads(predict_v2["body"])
    assert json.loads(health["body"]) == {"status": "ok", "model_version": version}
    assert json.loads(model["body"])["card"]["version"] == version
    assert bad["statusCode"] == 422 and "instances[0].age" in bad["body"]


@pytest.mark.parametrize("family", ["catboost", "random_forest", "hist_gradient_boosting"])
def test_handler_runs_from_the_image_folder_alone(site_packages, task_root, tmp_path, family):
    build_registry(tmp_path / "registry", (family,), promote=f"v1-{family}")
    check(
        run_handler(task_root, site_packages, str(tmp_path / "registry"), events()),
        f"v1-{family}",
        site_packages,
    )


def test_handler_from_the_image_folder_reads_an_s3_registry(
    site_packages, task_root, s3_bucket, s3_endpoint
):
    root = f"s3://{s3_bucket}/registry"
    build_registry(root, ("logistic_regression",), promote="v1-logistic_regression")
    answer = run_handler(
        task_root,
        site_packages,
        root,
        events(),
        AWS_ENDPOINT_URL=s3_endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    check(answer, "v1-logistic_regression", site_packages)


class RuntimeApi(ThreadingHTTPServer):
    """A stand-in of the Lambda Runtime API (the 2018-06-01 paths the runtime interface
    client calls): hands out ``events`` one per /next, keeps what comes back."""

    daemon_threads = True

    def __init__(self, events: list[dict]):
        super().__init__(("127.0.0.1", 0), _RuntimeApiHandler)
        self.pending = list(enumerate(events))
        self.results: dict[int, dict] = {}
        self.errors: list[dict] = []
        self.answered = threading.Condition()


class _RuntimeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RuntimeApi

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        assert self.path == "/2018-06-01/runtime/invocation/next", self.path
        with self.server.answered:
            if not self.server.pending:  # every event handed out: hold the runtime here
                self.server.answered.wait(60)
                return
            number, event = self.server.pending.pop(0)
        self._reply(
            200,
            json.dumps(event).encode(),
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": f"request-{number}",
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:churn-serving",
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000",
            },
        )

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        match = re.fullmatch(
            r"/2018-06-01/runtime/invocation/request-(\d+)/(response|error)", self.path
        )
        with self.server.answered:
            if match and match.group(2) == "response":
                self.server.results[int(match.group(1))] = json.loads(body)
            else:  # an invocation error or /runtime/init/error
                self.server.errors.append(
                    {"path": self.path, "body": body.decode(errors="replace")}
                )
            self.server.answered.notify_all()
        self._reply(202)


def test_the_image_cmd_answers_through_the_lambda_runtime_interface_client(
    site_packages, runtime_interface_client, task_root, tmp_path
):
    build_registry(tmp_path / "registry", ("random_forest",), promote="v1-random_forest")
    (cmd,) = instructions("CMD")
    api = RuntimeApi(events())
    threading.Thread(target=api.serve_forever, daemon=True).start()
    process = subprocess.Popen(
        [sys.executable, "-S", "-m", "awslambdaric", *json.loads(cmd)],
        cwd=task_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            "PYTHONPATH": os.pathsep.join(
                map(str, (task_root, site_packages, runtime_interface_client))
            ),
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
            "LAMBDA_TASK_ROOT": str(task_root),
            "CHURN_REGISTRY": str(tmp_path / "registry"),
            "PATH": "/usr/bin:/bin",
            "HOME": str(task_root),
        },
    )
    try:
        with api.answered:
            api.answered.wait_for(
                lambda: (
                    len(api.results) == len(events()) or api.errors or process.poll() is not None
                ),
                timeout=60,
            )
    finally:
        process.kill()
        output = process.communicate()[0]
        api.shutdown()
    assert not api.errors and len(api.results) == len(events()), (api.errors, output[-3000:])
    check_responses([api.results[n] for n in range(len(events()))], "v1-random_forest")


def test_image_answers_503_naming_the_version_when_the_champion_has_no_serving_form(
    site_packages, task_root, tmp_path
):
    registry = build_registry(tmp_path / "registry", ("catboost",), promote="v1-catboost")
    registry.fs.rm(registry.version_path("v1-catboost", SERVING_FILE))
    answer = run_handler(
        task_root, site_packages, registry.url, [rest_v1_event("GET", "/health", None)]
    )
    (health,) = answer["responses"]
    message = json.loads(health["body"])["error"]["message"]
    assert health["statusCode"] == 503
    assert f"version v1-catboost has no {SERVING_FILE}" in message, message
    assert answer["heavy"] == []  # no attempt to unpickle the Pipeline


def declined_case(case: str):
    """A fitted Pipeline and card whose serving form the export must decline."""
    import numpy as np
    import pandas as pd

    from churn_kedro.pipelines.data_science.models import FAMILIES
    from churn_kedro.schema import Schema

    rng = np.random.default_rng(0)
    rows = 300
    if case == "categorical without values":
        params = {"categorical_features": {"policy_type": {}}}
        family, categories = "catboost", {"policy_type": ["auto", "home", "life"]}
    elif case == "too many category combinations":
        values = [f"c{i}" for i in range(40)]
        params = {"categorical_features": {n: {"values": values} for n in ("a", "b", "c")}}
        family, categories = "catboost", {n: values for n in ("a", "b", "c")}
    else:  # a forest too wide for the packed nodes: 2,100 one-hot columns
        values = [f"c{i}" for i in range(2100)]
        params = {"categorical_features": {"region": {"values": values}}}
        family, categories = "random_forest", {"region": values}
    schema = Schema.from_params(
        {
            "id_column": "id",
            "target": {"column": "y", "positive": 1, "negative": 0},
            "numeric_features": {"x": {}},
            **params,
        }
    )
    rows = max(rows, *map(len, categories.values()))
    frame = pd.DataFrame({"x": rng.normal(size=rows)})
    for name, values in categories.items():  # every value seen in training
        frame[name] = rng.permutation(np.resize(np.array(values, dtype=object), rows))
    y = (frame["x"] + rng.normal(size=rows) > 0).astype(int)
    fast = {"catboost": {"iterations": 20, "depth": 3}, "random_forest": {"n_estimators": 3}}
    model = FAMILIES[family](
        schema.numeric_features, schema.categorical_features, fast[family], 0, None
    ).fit(frame[schema.features], y)
    card = {"version": "v-declined", "threshold": 0.5, "features": schema.features}
    return model, {**card, "schema": schema.to_dict()}


@pytest.mark.parametrize(
    "case, reason",
    [
        ("categorical without values", "lists no values for categorical policy_type"),
        ("too many category combinations", "too many to tabulate"),
        ("forest too wide", "forest too large for the packed serving form"),
    ],
)
def test_a_declined_export_registers_the_version_unpromoted_with_the_reason(tmp_path, case, reason):
    from churn_kedro.contracts import RegistryEntry
    from churn_kedro.datasets import ModelRegistryDataset

    model, card = declined_case(case)
    dataset = ModelRegistryDataset(str(tmp_path / "registry"))
    row = {"version": "v-declined", "role": "challenger", "decision": "promoted", "reason": "ok"}
    dataset.save(RegistryEntry("v-declined", model, card, True, "promoted: ok", [row]))
    registry = dataset.registry
    assert registry.versions() == ["v-declined"] and registry.champion() is None
    saved = registry.card("v-declined")
    assert saved["serving"]["servable"] is False and reason in saved["serving"]["reason"]
    assert saved["decision"]["promote"] is False
    assert "no serving form the serving image can load" in saved["decision"]["reason"]
    (benchmark,) = registry.benchmarks().to_dict("records")
    assert benchmark["decision"] == "rejected" and reason in benchmark["reason"]
    assert not registry.fs.exists(registry.version_path("v-declined", SERVING_FILE))
