"""The inference API: real HTTP against `python -m churn_kedro.serving` on a
free port, the Lambda handler with canonical v1/v2 events, hot swap, the serving form
against the Pipelines, and the import budget of the serving package."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import free_port
from serving_fixtures import (
    SCHEMA,
    build_registry,
    card,
    feature_frame,
    fit,
    forest_format_1,
    instances,
)

from churn_kedro.export import export_serving_form, pipeline_probability, probe_rows
from churn_kedro.inference import MISSING_CATEGORY, ServingModel, predict
from churn_kedro.registry import SERVING_FILE, ModelRegistry, RegistryError
from churn_kedro.schema import validate_frame
from churn_kedro.serving.app import ROUTES, Application, openapi_document
from churn_kedro.serving.lambda_handler import handler

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("logistic_regression", "random_forest", "catboost", "hist_gradient_boosting")


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "registry"
    build_registry(root, FAMILIES, promote="v3-catboost")
    return root


@pytest.fixture
def registry(registry_template, tmp_path) -> ModelRegistry:
    root = tmp_path / "registry"
    shutil.copytree(registry_template, root)
    return ModelRegistry(str(root))


class Server:
    def __init__(self, registry_root, refresh: float, max_batch: int = 50):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "churn_kedro.serving",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--registry",
                str(registry_root),
                "--refresh-seconds",
                str(refresh),
                "--max-batch",
                str(max_batch),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/openapi.json", timeout=2).read()
                return
            except (urllib.error.URLError, ConnectionError) as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"server did not start:\n{self.process.stdout.read()}"
                    ) from exc
                time.sleep(0.1)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | None = None,
        content_type: str | None = "application/json",
    ) -> tuple[int, dict, dict]:
        data = (
            json.dumps(body).encode()
            if isinstance(body, dict)
            else (body.encode() if isinstance(body, str) else body)
        )
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), dict(error.headers)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def server(registry):
    s = Server(registry.url, refresh=0.3)
    yield s
    s.stop()


# ---- the endpoints over HTTP ------------------------------------------------------------


def test_health_model_openapi(server, registry):
    status, body, headers = server.request("GET", "/health")
    assert (status, body) == (200, {"status": "ok", "model_version": "v3-catboost"})
    assert headers["X-Model-Version"] == "v3-catboost"
    status, body, _ = server.request("GET", "/model")
    assert status == 200 and body["card"] == registry.card("v3-catboost")
    status, body, _ = server.request("GET", "/openapi.json")
    assert status == 200 and body["openapi"].startswith("3.")
    assert set(body["paths"]) == {"/predict", "/health", "/model", "/openapi.json"}
    instance = body["components"]["schemas"]["Instance"]
    # nullable: null is listed in the enum too (OpenAPI 3.0 wants it there)
    assert instance["properties"]["policy_type"]["enum"] == ["auto", "home", "life", None]
    assert instance["properties"]["age"] == {
        "type": "integer",
        "nullable": True,
        "minimum": 18,
        "maximum": 110,
    }
    assert (
        body["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]["instances"]["maxItems"]
        == 50
    )


def test_predict_answers_each_customer_with_the_version(server, registry):
    rows = instances(20)
    status, body, headers = server.request("POST", "/predict", {"instances": rows})
    assert status == 200, body
    assert body["model_version"] == headers["X-Model-Version"] == "v3-catboost"
    assert [p["customer_id"] for p in body["predictions"]] == [r["customer_id"] for r in rows]
    # the same rows through the persisted Pipeline itself
    frame = pd.DataFrame(rows)
    frame["policy_type"] = (
        frame["policy_type"].astype(object).where(frame["policy_type"].notna(), np.nan)
    )
    expected = registry.load_model("v3-catboost").predict_proba(
        frame[SCHEMA.features].astype({c: "float64" for c in SCHEMA.numeric_features})
    )[:, 1]
    got = np.array([p["churn_probability"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    threshold = registry.card("v3-catboost")["threshold"]
    assert [p["churn"] for p in body["predictions"]] == [bool(p >= threshold) for p in got]


GOOD = {
    "customer_id": 7,
    "age": 36,
    "annual_premium": 2386.5,
    "policy_type": "auto",
    "claims_count": 1,
}


def with_(**changes):
    row = {**GOOD, **changes}
    return {"instances": [GOOD, {k: v for k, v in row.items() if v is not ...}]}


BAD_BODIES = [
    # (name, body, content type, status, field, words in the problem)
    (
        "age as text",
        with_(age="36"),
        "application/json",
        422,
        "instances[1].age",
        "expected a number, got string",
    ),
    (
        "premium as bool",
        with_(annual_premium=True),
        "application/json",
        422,
        "instances[1].annual_premium",
        "boolean",
    ),
    (
        "missing field",
        with_(claims_count=...),
        "application/json",
        422,
        "instances[1].claims_count",
        "missing",
    ),
    (
        "missing id",
        with_(customer_id=...),
        "application/json",
        422,
        "instances[1].customer_id",
        "missing",
    ),
    (
        "id as object",
        with_(customer_id={"a": 1}),
        "application/json",
        422,
        "instances[1].customer_id",
        "object",
    ),
    (
        "NaN token",
        json.dumps(with_(age=0)).replace('"age": 0', '"age": NaN'),
        "application/json",
        422,
        "instances[1].age",
        "NaN is not a finite number",
    ),
    (
        "Infinity token",
        json.dumps(with_(age=0)).replace('"age": 0', '"age": -Infinity'),
        "application/json",
        422,
        "instances[1].age",
        "-Infinity is not a finite number",
    ),
    (
        "overflow to inf",
        json.dumps(with_(annual_premium=0)).replace(
            '"annual_premium": 0', '"annual_premium": 1e999'
        ),
        "application/json",
        422,
        "instances[1].annual_premium",
        "not a finite number",
    ),
    (
        "fractional integer",
        with_(claims_count=1.5),
        "application/json",
        422,
        "instances[1].claims_count",
        "not a whole number",
    ),
    (
        "out of bounds",
        with_(age=150),
        "application/json",
        422,
        "instances[1].age",
        "above the maximum 110",
    ),
    (
        "not greater than",
        with_(annual_premium=0),
        "application/json",
        422,
        "instances[1].annual_premium",
        "not greater than 0",
    ),
    (
        "unseen category",
        with_(policy_type="boat"),
        "application/json",
        422,
        "instances[1].policy_type",
        "'boat' is not one of auto, home, life",
    ),
    (
        "category as number",
        with_(policy_type=3),
        "application/json",
        422,
        "instances[1].policy_type",
        "expected a string",
    ),
    ("unknown field", with_(agee=3), "application/json", 422, "instances[1].agee", "unknown field"),
    (
        "instance not an object",
        {"instances": [GOOD, [1, 2]]},
        "application/json",
        422,
        "instances[1]",
        "expected an object",
    ),
    ("empty batch", {"instances": []}, "application/json", 422, "instances", "empty"),
    (
        "oversized batch",
        {"instances": [GOOD] * 51},
        "application/json",
        413,
        "instances",
        "51 rows, more than the maximum batch of 50",
    ),
    (
        "instances not a list",
        {"instances": {"a": 1}},
        "application/json",
        422,
        "instances",
        "array",
    ),
    ("not JSON", "{instances: [", "application/json", 400, None, "not valid JSON"),
    ("not UTF-8", b"\xff\xfe{", "application/json", 400, None, "not valid JSON"),
    ("JSON but not an object", "[1, 2]", "application/json", 422, None, "must be a JSON object"),
    (
        "wrong content type",
        json.dumps({"instances": [GOOD]}),
        "text/plain",
        415,
        None,
        "application/json",
    ),
    ("no content type", json.dumps({"instances": [GOOD]}), None, 415, None, "application/json"),
]


@pytest.mark.parametrize(
    "name, body, content_type, status, field, words", BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_input_gets_a_4xx_naming_the_field(
    server, name, body, content_type, status, field, words
):
    got, answer, _ = server.request("POST", "/predict", body, content_type)
    assert got == status, answer
    error = answer["error"]
    assert error["status"] == status and words in error["message"]
    assert answer["model_version"] == "v3-catboost"
    if field:
        assert error["problems"][0]["field"] == field and words in error["problems"][0]["problem"]
        assert error["message"].startswith(field)


def test_every_problem_of_a_batch_is_listed(server):
    body = {
        "instances": [
            GOOD,
            {**GOOD, "age": "x"},
            {**GOOD, "policy_type": "boat", "claims_count": -1},
        ]
    }
    status, answer, _ = server.request("POST", "/predict", body)
    assert status == 422
    assert [p["field"] for p in answer["error"]["problems"]] == [
        "instances[1].age",
        "instances[2].claims_count",
        "instances[2].policy_type",
    ]


def test_wrong_method_and_path(server):
    status, body, headers = server.request("GET", "/predict", content_type=None)
    assert status == 405 and headers["Allow"] == "POST" and body["model_version"] == "v3-catboost"
    status, body, _ = server.request("GET", "/nowhere", content_type=None)
    assert status == 404 and "/predict" in body["error"]["message"]


def test_missing_values_are_the_missing_category(server):
    body = {"instances": [{**GOOD, "age": None, "policy_type": None}]}
    status, answer, _ = server.request("POST", "/predict", body)
    assert status == 200
    assert 0.0 < answer["predictions"][0]["churn_probability"] < 1.0


def test_ids_come_back_as_sent_even_beyond_64_bits(server):
    ids = [2**70, -(2**63) - 1, "Zoë-7", 7]
    status, answer, _ = server.request(
        "POST", "/predict", {"instances": [{**GOOD, "customer_id": i} for i in ids]}
    )
    assert status == 200, answer
    assert [p["customer_id"] for p in answer["predictions"]] == ids


# ---- hostile bodies: a 4xx in the error shape, over HTTP and through the Lambda handler ----


def _text(body: dict) -> str:
    """JSON text with every non-ASCII character escaped (a lone surrogate as \\ud800)."""
    return json.dumps(body)


HOSTILE = [
    # (name, body text, status, field or None, words in the message)
    (
        "nested 1,000 deep",
        '{"instances": ' + "[" * 1000 + "]" * 1000 + "}",
        400,
        None,
        "nested too deeply",
    ),
    (
        "nested 100,000 deep",
        '{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}",
        400,
        None,
        "nested too deeply",
    ),
    (
        "integer feature of 400 digits",
        _text(with_(annual_premium=10**400)),
        422,
        "instances[1].annual_premium",
        "an integer of 401 digits is beyond the range of a number",
    ),
    (
        "integer feature of 400 digits, alone",
        _text({"instances": [{**GOOD, "annual_premium": 10**400}]}),
        422,
        "instances[0].annual_premium",
        "beyond the range of a number",
    ),
    (
        "id of 5,000 digits",
        _text(with_(customer_id=0)).replace('"customer_id": 0', '"customer_id": ' + "9" * 5000),
        400,
        None,
        "4300",
    ),
    ("lone surrogate in an id", _text(with_(customer_id="\ud800")), 400, None, "surrogate"),
    (
        "lone surrogate in a category",
        _text(with_(policy_type="auto\udfff")),
        400,
        None,
        "surrogate",
    ),
    (
        "lone surrogate in a field name",
        _text({"instances": [{**GOOD, "\ud800": 1}]}),
        400,
        None,
        "surrogate",
    ),
    (
        "lone surrogate as a top-level key",
        _text({"instances": [GOOD], "\udc00x": 1}),
        400,
        None,
        "surrogate",
    ),
    (
        "id of only spaces",
        _text(with_(customer_id="   ")),
        422,
        "instances[1].customer_id",
        "blank",
    ),
    (
        "id of 129 characters",
        _text(with_(customer_id="x" * 129)),
        422,
        "instances[1].customer_id",
        "129 characters, longer than the maximum of 128",
    ),
    (
        "integer id of 129 digits",
        _text(with_(customer_id=10**128)),
        422,
        "instances[1].customer_id",
        "129 characters, longer than the maximum of 128",
    ),
]


@pytest.mark.parametrize("name, text, status, field, words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_get_a_4xx_in_the_error_shape(
    server, registry, name, text, status, field, words
):
    app = Application(registry.url, refresh_seconds=60, max_batch=10)
    answers = {"http": server.request("POST", "/predict", text)[:2]}
    for make_event in (rest_v1_event, http_v2_event):
        response = handler(make_event("POST", "/predict", text), None, app=app)
        assert response["headers"]["Content-Type"] == "application/json"
        answers[make_event.__name__] = (response["statusCode"], json.loads(response["body"]))
    for via, (got, answer) in answers.items():
        assert got == status, (via, answer)
        error = answer["error"]
        assert error["status"] == status and words in error["message"], (via, error)
        assert answer["model_version"] == "v3-catboost"
        if field:
            assert error["problems"][0]["field"] == field, (via, error)


def test_a_lone_surrogate_character_in_a_lambda_event_body_is_a_400(registry):
    """The Lambda runtime hands the body over as text: a lone surrogate may be a character."""
    app = Application(registry.url, refresh_seconds=60)
    body = json.dumps({"instances": [{**GOOD, "customer_id": "a\ud800"}]}, ensure_ascii=False)
    response = handler(rest_v1_event("POST", "/predict", body), None, app=app)
    assert response["statusCode"] == 400, response
    assert "not valid JSON" in json.loads(response["body"])["error"]["message"]
    # a body flagged base64 that is not
    event = {
        **rest_v1_event("POST", "/predict", "{}"),
        "body": "not*base64",
        "isBase64Encoded": True,
    }
    response = handler(event, None, app=app)
    assert response["statusCode"] == 400
    assert "not valid base64" in json.loads(response["body"])["error"]["message"]
    # and a path holding one is a 404 that can still be written
    response = handler(rest_v1_event("GET", "/\udc80x", None), None, app=app)
    assert response["statusCode"] == 404 and json.loads(response["body"])["error"]["status"] == 404


def test_the_id_length_comes_from_the_card(registry):
    from churn_kedro.serving.validation import RequestError, check_instances

    short = card("v", "catboost")
    short["schema"] = {**short["schema"], "id_max_length": 4}
    for good in (1234, -123, "abcd"):  # the fast path and the row-by-row one agree
        assert check_instances({"instances": [{**GOOD, "customer_id": good}]}, short, 10)
    for bad in (12345, -1234, "abcde"):
        with pytest.raises(RequestError, match="5 characters, longer than the maximum of 4"):
            check_instances({"instances": [{**GOOD, "customer_id": bad}]}, short, 10)
    older = card("v", "catboost")  # a card written before the schema had id_max_length
    del older["schema"]["id_max_length"]
    with pytest.raises(RequestError, match="longer than the maximum of 128"):
        check_instances({"instances": [{**GOOD, "customer_id": "x" * 129}]}, older, 10)


def test_a_long_valid_id_and_a_valid_surrogate_pair_are_served(server):
    ids = ["x" * 128, "emoji \U0001f600", " padded ", 10**127]
    status, answer, _ = server.request(
        "POST", "/predict", _text({"instances": [{**GOOD, "customer_id": i} for i in ids]})
    )
    assert status == 200, answer
    assert [p["customer_id"] for p in answer["predictions"]] == ids


# ---- the OpenAPI document and the routes ------------------------------------------------


def test_the_served_document_is_valid_openapi_3_0_3(server, registry):
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.validators import OpenAPIV30SpecValidator

    status, document, _ = server.request("GET", "/openapi.json")
    assert status == 200 and document["openapi"] == "3.0.3"
    validate(document, cls=OpenAPIV30SpecValidator)  # raises on any breach of the 3.0 schema
    validate(openapi_document(None, 10), cls=OpenAPIV30SpecValidator)  # no champion yet
    instance = document["components"]["schemas"]["Instance"]
    assert instance["additionalProperties"] is False
    assert instance["properties"]["annual_premium"] == {
        "type": "number",
        "nullable": True,
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert instance["properties"]["customer_id"]["oneOf"][1]["maxLength"] == 128
    predict = document["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    assert body["additionalProperties"] is False
    assert {"200", "400", "405", "413", "415", "422", "503"} == set(predict["responses"])
    assert "6291456 bytes" in predict["responses"]["413"]["description"]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert "405" in operation["responses"], path


def test_bounds_in_openapi_3_0_form():
    from churn_kedro.serving.app import _bounds

    assert _bounds({"gt": 0}) == {"minimum": 0, "exclusiveMinimum": True}
    assert _bounds({"min": 1, "gt": 0, "lt": 5}) == {
        "minimum": 1,
        "maximum": 5,
        "exclusiveMaximum": True,
    }
    assert _bounds({"min": 0, "gt": 0, "max": 3}) == {
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 3,
    }
    assert _bounds({}) == {}


def test_one_list_of_routes_for_the_server_the_lambda_handler_and_the_document(registry):
    app = Application(registry.url, refresh_seconds=60)
    assert set(openapi_document(None, 10)["paths"]) == set(ROUTES)
    for path, methods in ROUTES.items():
        (method,) = methods
        body = json.dumps({"instances": [GOOD]}) if method == "POST" else None
        assert app.handle(method, path, {"content-type": "application/json"}, body).status == 200
        event = rest_v1_event(method, "/prod" + path, body)  # behind a stage prefix
        assert handler(event, None, app=app)["statusCode"] == 200, path
        other = "GET" if method == "POST" else "POST"
        response = handler(rest_v1_event(other, path, body), None, app=app)
        assert response["statusCode"] == 405 and response["headers"]["Allow"] == method


# ---- serving another Kedro environment ---------------------------------------------------


def test_serve_reads_the_registry_and_schema_of_a_kedro_environment(tmp_path, registry_template):
    """`python -m churn_kedro.serving --env mine` (what `make serve ENV=mine` runs) serves
    the registry of conf/mine's catalog, and says when conf/mine's schema is not the
    champion's (requests are checked against the champion's)."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "conf", project / "conf")
    shutil.copytree(registry_template, project / "elsewhere" / "registry")
    base = yaml.safe_load((REPO / "conf/base/globals.yml").read_text())
    mine = project / "conf" / "mine"
    mine.mkdir()
    paths = {**base["paths"], "registry": "elsewhere/registry"}
    (mine / "globals.yml").write_text(yaml.safe_dump({"paths": paths}))
    port = free_port()
    command = [sys.executable, "-m", "churn_kedro.serving", "--env", "mine", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "CHURN_REGISTRY"}

    def serve_once() -> tuple[dict, str]:
        process = subprocess.Popen(
            command,
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                        health = json.loads(r.read())
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert process.poll() is None and time.monotonic() < deadline
                    time.sleep(0.2)
        finally:
            process.terminate()
            output = process.communicate(timeout=10)[0]
        return health, output

    health, output = serve_once()
    assert health == {"status": "ok", "model_version": "v3-catboost"}
    assert "serving elsewhere/registry (champion v3-catboost)" in output
    assert "trained with other" not in output

    params = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())
    params["schema"]["numeric_features"]["age"]["max"] = 99
    (mine / "parameters.yml").write_text(yaml.safe_dump({"schema": params["schema"]}))
    health, output = serve_once()
    assert health["model_version"] == "v3-catboost"
    assert "trained with other numeric_features rules than conf/mine's schema" in output, output


# ---- champion loading -------------------------------------------------------------------


def test_hot_swap_after_the_refresh_interval(server, registry):
    assert server.request("GET", "/health")[1]["model_version"] == "v3-catboost"
    registry.promote("v1-logistic_regression", "swap test")
    time.sleep(0.5)  # > the server's 0.3 s refresh interval
    status, body, _ = server.request("POST", "/predict", {"instances": [GOOD]})
    assert status == 200 and body["model_version"] == "v1-logistic_regression"
    registry.rollback()
    time.sleep(0.5)
    assert server.request("GET", "/health")[1]["model_version"] == "v3-catboost"


def test_no_champion_is_503_until_one_is_promoted(tmp_path, registry_template):
    root = tmp_path / "registry"
    shutil.copytree(registry_template, root)
    (root / "champion.json").unlink()
    s = Server(root, refresh=0.2)
    try:
        for method, path in (("GET", "/health"), ("GET", "/model"), ("POST", "/predict")):
            status, body, _ = s.request(
                method, path, {"instances": [GOOD]} if method == "POST" else None
            )
            assert status == 503, body
            assert "no champion" in body["error"]["message"] and body["model_version"] is None
        assert s.request("GET", "/openapi.json")[0] == 200  # the document does not need a model
        ModelRegistry(str(root)).promote("v2-random_forest", "first")
        time.sleep(0.4)
        assert s.request("GET", "/health")[:2] == (
            200,
            {"status": "ok", "model_version": "v2-random_forest"},
        )
    finally:
        s.stop()


def test_corrupted_champion_file_keeps_the_loaded_model(registry):
    app = Application(registry.url, refresh_seconds=0, max_batch=10)
    assert app.handle("GET", "/health").status == 200
    (registry.fs.open(registry._path("champion.json"), "w")).write("{not json")
    response = app.handle("GET", "/health")
    assert response.status == 200 and response.body["model_version"] == "v3-catboost"
    fresh = Application(registry.url, refresh_seconds=0, max_batch=10).handle("GET", "/health")
    assert fresh.status == 503 and "corrupted" in fresh.body["error"]["message"]


def test_version_without_serving_form_is_not_promotable_and_answers_503(registry):
    registry.fs.rm(registry.version_path("v2-random_forest", SERVING_FILE))
    with pytest.raises(
        RegistryError, match=f"cannot promote v2-random_forest: it has no {SERVING_FILE}"
    ):
        registry.promote("v2-random_forest", "test")
    warm = Application(registry.url, refresh_seconds=0, max_batch=10)
    assert warm.handle("GET", "/health").body["model_version"] == "v3-catboost"
    # champion.json written by hand (or by older code) naming it anyway
    doc = {"version": "v2-random_forest", "promoted_at": "2026-11-01T00:00:00Z", "reason": "hand"}
    registry.fs.pipe_file(registry._path("champion.json"), json.dumps(doc).encode())
    assert warm.handle("GET", "/health").body["model_version"] == "v3-catboost"  # keeps its model
    fresh = Application(registry.url, refresh_seconds=0, max_batch=10).handle("GET", "/health")
    message = fresh.body["error"]["message"]
    assert fresh.status == 503
    assert f"version v2-random_forest has no {SERVING_FILE}" in message, message


def test_a_format_1_forest_stays_servable(registry):
    """Versions written before the forest's packed format are still served, exactly."""
    model = registry.load_model("v2-random_forest")
    path = registry.version_path("v2-random_forest", SERVING_FILE)
    registry.fs.pipe_file(path, forest_format_1(model))
    registry.promote("v2-random_forest", "test")
    app = Application(registry.url, refresh_seconds=0, max_batch=2000)
    served = app.champions.get()["model"]
    assert isinstance(served, ServingModel) and served.meta["format"] == 1
    card = registry.card("v2-random_forest")
    probe = probe_rows(card, 1500)
    np.testing.assert_allclose(
        served.probability(probe), pipeline_probability(model, card, probe), rtol=0, atol=1e-9
    )


def test_registry_on_s3(s3_bucket, monkeypatch):
    root = f"s3://{s3_bucket}/registry"
    build_registry(root, ("logistic_regression",), promote="v1-logistic_regression")
    monkeypatch.setenv("CHURN_REGISTRY", root)
    app = Application(refresh_seconds=0)
    response = app.handle(
        "POST", "/predict", {"content-type": "application/json"}, json.dumps({"instances": [GOOD]})
    )
    assert response.status == 200 and response.body["model_version"] == "v1-logistic_regression"


# ---- the Lambda handler with canonical API Gateway events -------------------------------


def rest_v1_event(method: str, path: str, body: str | None, base64_body: bool = False) -> dict:
    """An API Gateway REST API proxy event (payload 1.0), as in the AWS documentation."""
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {
            "Content-Type": "application/json",
            "Host": "abc123.execute-api.us-east-1.amazonaws.com",
            "X-Forwarded-Proto": "https",
        },
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/v1{path}",
            "stage": "v1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "127.0.0.1", "apiKey": "test"},
        },
        "body": base64.b64encode(body.encode()).decode() if base64_body and body else body,
        "isBase64Encoded": base64_body,
    }


def http_v2_event(method: str, path: str, body: str | None, base64_body: bool = True) -> dict:
    """An API Gateway HTTP API event (payload 2.0), as in the AWS documentation."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "curl/8",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "10/Mar/2026:00:03:59 +0000",
            "timeEpoch": 1773100000000,
        },
        "body": base64.b64encode(body.encode()).decode() if base64_body and body else body,
        "isBase64Encoded": bool(base64_body and body),
    }


@pytest.mark.parametrize("make_event", [rest_v1_event, http_v2_event], ids=["rest-v1", "http-v2"])
def test_lambda_handler_answers_v1_and_v2_events(make_event, registry):
    app = Application(registry.url, refresh_seconds=60, max_batch=10)
    body = json.dumps({"instances": [GOOD, {**GOOD, "customer_id": "B-2", "policy_type": None}]})
    response = handler(make_event("POST", "/predict", body), None, app=app)
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is False
    answer = json.loads(response["body"])
    assert answer["model_version"] == response["headers"]["X-Model-Version"] == "v3-catboost"
    assert [p["customer_id"] for p in answer["predictions"]] == [7, "B-2"]
    health = handler(make_event("GET", "/health", None), None, app=app)
    assert health["statusCode"] == 200 and json.loads(health["body"])["status"] == "ok"
    bad = handler(
        make_event("POST", "/predict", json.dumps({"instances": [{**GOOD, "age": "old"}]})),
        None,
        app=app,
    )
    assert (
        bad["statusCode"] == 422
        and "instances[0].age" in json.loads(bad["body"])["error"]["message"]
    )
    assert handler(make_event("GET", "/model", None), None, app=app)["statusCode"] == 200


def test_lambda_handler_with_a_stage_prefix_and_base64_v1(registry):
    app = Application(registry.url, refresh_seconds=60)
    event = rest_v1_event(
        "POST", "/v1/predict", json.dumps({"instances": [GOOD]}), base64_body=True
    )
    assert handler(event, None, app=app)["statusCode"] == 200


# ---- the serving form and the rules ------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_serving_form_equals_the_pipeline(family):
    model = fit(family, seed=3)
    serving = ServingModel.from_bytes(export_serving_form(model, card("v", family)).to_bytes())
    frame = feature_frame(2000, seed=11)
    frame.loc[::7, "policy_type"] = "never-seen"  # unseen categories, as the Pipelines see them
    expected = model.predict_proba(frame[SCHEMA.features])[:, 1]
    got = predict({"version": "v", "model": serving, "card": card("v", family)}, frame).probability
    assert np.max(np.abs(got - expected)) <= 1e-9


@pytest.mark.parametrize("family", ["catboost", "hist_gradient_boosting"])
def test_numbers_beyond_float32_score_as_the_pipeline_does(family):
    """A valid request may carry 1e300: CatBoost casts it to float32 (inf), so does the
    form; histogram gradient boosting compares it in float64, so does the form."""
    model = fit(family, seed=3)
    frame = feature_frame(50, seed=4)
    frame.loc[::2, "annual_premium"] = 1e300
    frame.loc[1::4, "claims_count"] = 1e39
    card_ = card("v", family)
    serving = ServingModel.from_bytes(export_serving_form(model, card_).to_bytes())
    got = predict({"version": "v", "model": serving, "card": card_}, frame).probability
    expected = model.predict_proba(frame[SCHEMA.features])[:, 1]
    assert np.max(np.abs(got - expected)) <= 1e-9


@pytest.mark.parametrize("family", FAMILIES)
def test_pipelines_treat_none_and_nan_categories_alike(family):
    model = fit(family, seed=5)
    frame = feature_frame(300, seed=12)
    with_none = frame.copy()
    with_none["policy_type"] = (
        with_none["policy_type"].astype(object).where(with_none["policy_type"].notna(), None)
    )
    assert with_none["policy_type"].map(lambda v: v is None).sum() > 10
    # (not bit-equal: the random forest sums its trees in parallel, in any order)
    np.testing.assert_allclose(
        model.predict_proba(with_none[SCHEMA.features]),
        model.predict_proba(frame[SCHEMA.features]),
        rtol=0,
        atol=1e-12,
    )


def test_missing_category_constant_matches_the_models():
    from churn_kedro.pipelines.data_science import models

    assert models.MISSING_CATEGORY == MISSING_CATEGORY


def test_request_rules_agree_with_the_schema():
    """The API rejects exactly the rows that churn_kedro.schema would quarantine."""
    rows = [
        GOOD,
        {**GOOD, "age": 17},
        {**GOOD, "age": 18},
        {**GOOD, "age": 110.5},
        {**GOOD, "annual_premium": 0},
        {**GOOD, "annual_premium": 0.01},
        {**GOOD, "claims_count": -1},
        {**GOOD, "claims_count": 2.0},
        {**GOOD, "policy_type": "boat"},
        {**GOOD, "policy_type": None},
        {**GOOD, "age": None},
        {**GOOD, "policy_type": " home "},
        {**GOOD, "customer_id": "   "},
        {**GOOD, "customer_id": "i" * 128},
        {**GOOD, "customer_id": "i" * 129},
    ]
    from churn_kedro.serving.validation import RequestError, check_instances

    def with_id(i: int, row: dict) -> dict:  # a distinct id, unless the row tests the id
        return {
            **row,
            "customer_id": i if row["customer_id"] == GOOD["customer_id"] else row["customer_id"],
        }

    card_ = card("v", "catboost")
    api_rejects = []
    for i, row in enumerate(rows):
        try:
            check_instances({"instances": [with_id(i, row)]}, card_, 10)
            api_rejects.append(False)
        except RequestError:
            api_rejects.append(True)
    text = pd.DataFrame(
        [
            {k: "" if v is None else str(v) for k, v in with_id(i, r).items()}
            for i, r in enumerate(rows)
        ]
    )
    result = validate_frame(text, SCHEMA, "rows.csv", labelled=False)
    schema_rejects = [i + 1 in set(result.rejected["row_number"]) for i in range(len(rows))]
    assert api_rejects == schema_rejects


def test_serving_imports_neither_kedro_nor_training_code(registry):
    code = (
        "import json, sys\n"
        "from churn_kedro.serving.lambda_handler import handler\n"
        "r = handler({'httpMethod': 'POST', 'path': '/predict', 'headers': {'content-type': 'application/json'},"
        f" 'body': json.dumps({{'instances': [{GOOD!r}]}})}})\n"
        "assert r['statusCode'] == 200, r\n"
        "heavy = sorted(m for m in ('kedro', 'sklearn', 'pandas', 'catboost', 'joblib', 'waitress', 'churn_kedro.pipelines',"
        " 'churn_kedro.schema') if m in sys.modules)\n"
        "print(json.dumps(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"CHURN_REGISTRY": registry.url, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
