"""The Lambda image without a Docker engine: lint the Dockerfile, check its structure,
install docker/requirements.txt exactly as its RUN line does (binary wheels for the base
image's platform tags) into an empty folder, lay out the COPY'd sources, and run the
handler from that folder alone (`python -S`) on REST v1 and HTTP API v2 events against
a real registry, on a local folder and on S3."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serving_fixtures import build_registry
from test_serving import GOOD, http_v2_event, rest_v1_event

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
    lines = [ln.strip() for ln in REQUIREMENTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.\-+]*", ln) for ln in lines), lines
    names = {ln.split("==")[0].lower() for ln in lines}
    assert {"numpy", "fsspec", "s3fs"} <= names
    assert not names & {"pandas", "scikit-learn", "catboost", "kedro", "joblib", "scipy"}
    assert "://" not in REQUIREMENTS.read_text()


def pip_arguments() -> list[str]:
    """The Dockerfile's pip install options (platform tags, ABI, binary only)."""
    (run,) = instructions("RUN")
    words = shlex.split(run.split("&&")[0].replace("\\\n", " "))
    words = words[words.index("install") + 1:]
    out, skip = [], False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in ("--target", "-r"):
            skip = True
            continue
        out.append(word)
    return out


@pytest.fixture(scope="module")
def site_packages(request) -> Path:
    """docker/requirements.txt installed as the image's RUN line does, into an empty
    folder; cached in .pytest_cache by the content of the requirements and options."""
    arguments = pip_arguments()
    key = hashlib.sha256((REQUIREMENTS.read_text() + " ".join(arguments)).encode()).hexdigest()[:16]
    cache = Path(request.config.cache.mkdir("docker-site-packages"))
    target = cache / key
    if not (target / ".complete").exists():
        partial = cache / f"{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *arguments, "--target", str(partial), "-r", str(REQUIREMENTS)],
            capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        (partial / ".complete").write_text(" ".join(arguments))
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


def test_install_is_exactly_the_pins_for_the_base_glibc(site_packages):
    pinned = {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1]
              for ln in REQUIREMENTS.read_text().splitlines() if ln and not ln.startswith("#")}
    installed = {}
    for info in site_packages.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[name.lower().replace("_", "-")] = version
        # a wheel may carry several tags; one of them must load on the base's glibc
        fits = []
        for tag in re.findall(r"^Tag: (.+)$", (info / "WHEEL").read_text(), re.M):
            platform = tag.split("-")[-1]
            glibc = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", platform)
            fits.append(platform in ("any", "manylinux2014_x86_64")
                        or bool(glibc and (int(glibc.group(1)), int(glibc.group(2))) <= MAX_GLIBC))
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
                shutil.copytree(path, dest, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / path.name)
    return root


RUN_EVENTS = """
import json, sys
import churn_kedro.serving.lambda_handler as module
handler = module.handler
out = [handler(event, None) for event in json.load(sys.stdin)]
heavy = sorted(m for m in ("pandas", "sklearn", "kedro", "catboost", "joblib") if m in sys.modules)
print(json.dumps({"responses": out, "heavy": heavy, "numpy": sys.modules["numpy"].__file__}))
"""


def run_handler(task_root: Path, site: Path, registry: str, events: list[dict], **env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-S", "-c", RUN_EVENTS], input=json.dumps(events), capture_output=True, text=True,
        timeout=120,
        env={"PYTHONPATH": f"{task_root}{os.pathsep}{site}", "CHURN_REGISTRY": registry,
             "PATH": "/usr/bin:/bin", "HOME": str(task_root), **env},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def events() -> list[dict]:
    body = json.dumps({"instances": [GOOD, {**GOOD, "customer_id": 8, "policy_type": None}]})
    return [rest_v1_event("POST", "/predict", body), http_v2_event("POST", "/predict", body),
            rest_v1_event("GET", "/health", None), http_v2_event("GET", "/model", None),
            http_v2_event("POST", "/predict", json.dumps({"instances": [{**GOOD, "age": "x"}]}))]


def check(answer: dict, version: str, site: Path) -> None:
    assert answer["heavy"] == []
    assert answer["numpy"].startswith(str(site))
    predict_v1, predict_v2, health, model, bad = answer["responses"]
    for response in (predict_v1, predict_v2):
        assert response["statusCode"] == 200, response
        body = json.loads(response["body"])
        assert body["model_version"] == version and len(body["predictions"]) == 2
    assert json.loads(predict_v1["body"]) == json.loads(predict_v2["body"])
    assert json.loads(health["body"]) == {"status": "ok", "model_version": version}
    assert json.loads(model["body"])["card"]["version"] == version
    assert bad["statusCode"] == 422 and "instances[0].age" in bad["body"]


@pytest.mark.parametrize("family", ["catboost", "random_forest"])
def test_handler_runs_from_the_image_folder_alone(site_packages, task_root, tmp_path, family):
    build_registry(tmp_path / "registry", (family,), promote=f"v1-{family}")
    check(run_handler(task_root, site_packages, str(tmp_path / "registry"), events()), f"v1-{family}", site_packages)


def test_handler_from_the_image_folder_reads_an_s3_registry(site_packages, task_root, s3_bucket, s3_endpoint):
    root = f"s3://{s3_bucket}/registry"
    build_registry(root, ("logistic_regression",), promote="v1-logistic_regression")
    answer = run_handler(task_root, site_packages, root, events(), AWS_ENDPOINT_URL=s3_endpoint,
                         AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    check(answer, "v1-logistic_regression", site_packages)
