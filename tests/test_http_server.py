"""The local server (`make serve`: waitress) with hand-made requests on real sockets: the
body limit, malformed lengths, methods outside the API, stalled connections and the
connection limit; and schemathesis against the document it serves."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager

import pytest
import schemathesis
from serving_fixtures import build_registry, card
from test_serving import GOOD

from churn_kedro.serving.__main__ import make_server
from churn_kedro.serving.app import MAX_BODY_BYTES, Application, openapi_document

CHAMPION = "v2-catboost"


@pytest.fixture(scope="module")
def registry_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "registry"
    build_registry(root, ("logistic_regression", "catboost"), promote="v2-catboost")
    return root


@contextmanager
def running(registry_root, **options):
    """The server of `make serve` in this process, on a free port; stopped from its own
    thread (waitress's loop, a turn at a time, until asked to stop)."""
    app = Application(str(registry_root), refresh_seconds=60, max_batch=50)
    server = make_server(app, "127.0.0.1", 0, **options)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.asyncore.loop(timeout=0.05, map=server._map, count=1)
        for channel in list(server._map.values()):
            channel.close()
        server.task_dispatcher.shutdown()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture
def port(registry_template, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(registry_template, root)
    with running(root, channel_timeout=1) as port:
        yield port


def exchange(port: int, raw: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` as it is; read the one answer: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def post(body: bytes, length: str | None = None, extra: str = "") -> bytes:
    length_header = f"Content-Length: {len(body) if length is None else length}\r\n"
    return (
        f"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"{length_header}{extra}\r\n"
    ).encode() + body


def error_of(status: int, headers: dict[str, str], body: bytes) -> dict:
    """The API's error shape, checked."""
    assert headers["content-type"] == "application/json", (headers, body)
    answer = json.loads(body)
    assert answer["error"]["status"] == status and answer["model_version"] == "v2-catboost"
    assert headers["x-model-version"] == "v2-catboost"
    return answer["error"]


BODY = json.dumps({"instances": [GOOD]}).encode()


def test_a_plain_request_is_answered(port):
    status, headers, body = exchange(port, post(BODY))
    assert status == 200 and json.loads(body)["model_version"] == "v2-catboost"


@pytest.mark.parametrize("length", ["-1", "abc", "+5", "1e3", " 12x"])
def test_a_malformed_content_length_is_a_400_in_the_error_shape(port, length):
    # -1 once made the old server read the body to its end, whatever its size
    status, headers, body = exchange(port, post(BODY, length))
    assert status == 400
    assert "Content-Length is invalid" in error_of(400, headers, body)["message"]


def test_a_body_over_6_mb_is_refused_before_it_is_read(port):
    # the header alone decides: the server answers without waiting for 7 MB
    status, headers, body = exchange(port, post(b"", str(MAX_BODY_BYTES + 1)))
    assert status == 413
    assert "Request Entity Too Large" in error_of(413, headers, body)["message"]


def test_a_chunked_body_over_6_mb_is_refused(port):
    chunk = b"x" * (1024 * 1024)
    raw = post(b"", extra="Transfer-Encoding: chunked\r\n").replace(b"Content-Length: 0\r\n", b"")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        try:
            for _ in range(8):
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:  # the server may close as soon as it has answered
            pass
        status, headers, body = read_answer(sock)
    assert status == 413
    error_of(413, headers, body)


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PUT", "DELETE", "PATCH"])
def test_methods_outside_the_api_are_405_in_the_error_shape(port, method):
    raw = f"{method} /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".encode()
    status, headers, body = exchange(port, raw)
    assert status == 405 and headers["allow"] == "POST"
    assert f"{method} /predict: use POST" in error_of(405, headers, body)["message"]


def test_head_answers_headers_only(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"HEAD /health HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        time.sleep(0.3)
        data = sock.recv(65536)
    # the HEAD's headers, then straight away the GET's answer on the same connection
    assert data.startswith(b"HTTP/1.1 200") and data.count(b"HTTP/1.1 200") == 2
    assert data.count(b'{"status":"ok"') == 1


def test_a_stalled_connection_is_closed_after_the_timeout(port):
    """channel_timeout=1 here: half a request line, then silence."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Le")
        started = time.monotonic()
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):  # still open at first
            sock.recv(1)
        sock.settimeout(10)  # closed within 10 s, or recv raises
        assert sock.recv(1) == b""  # then closed by the server, with no answer
        waited = time.monotonic() - started
        assert waited >= 1  # not before the channel timeout


def test_a_body_that_never_comes_is_not_waited_for(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(post(b'{"inst', "5000"))
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < 6


def test_connections_beyond_the_limit_wait_until_one_is_freed(registry_template, tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(registry_template, root)
    with running(root, connection_limit=3, channel_timeout=2) as port:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.settimeout(1)
            with pytest.raises(TimeoutError):  # queued while three connections are open
                sock.recv(1)
            sock.settimeout(10)
            started = time.monotonic()
            status, _, _ = read_answer(sock)  # answered once the idle ones time out
            assert status == 200 and time.monotonic() - started < 8
        for s in idle:
            s.close()


# ---- schemathesis against the served document ----------------------------------------

# A fixed seed and a bounded number of examples (per operation and generation mode, valid
# and invalid data); a longer or other run: CHURN_FUZZ_EXAMPLES=20000 CHURN_FUZZ_SEED=7.
FUZZ_SEED = int(os.environ.get("CHURN_FUZZ_SEED", 20261202))
FUZZ_EXAMPLES = int(os.environ.get("CHURN_FUZZ_EXAMPLES", 500))
FUZZ_BATCH = 50

# The document the served one must equal (checked below): schemathesis builds its tests at
# collection, before any fixture runs (its fixture-based loader does not support pytest 9).
DOCUMENT = openapi_document(card(CHAMPION, "catboost"), FUZZ_BATCH)
served_api = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": FUZZ_SEED,
            "generation": {"max-examples": FUZZ_EXAMPLES},
            # invalid data must get one of the API's documented refusals (413: a batch
            # over the maximum, which the default list of this check lacks)
            "checks": {"negative_data_rejection": {"expected-statuses": [400, 405, 413, 415, 422]}},
        }
    ),
)


@pytest.fixture(scope="module")
def served_url(registry_template, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "registry"
    shutil.copytree(registry_template, root)
    with running(root) as port:
        url = f"http://127.0.0.1:{port}"
        status, _, body = exchange(port, b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status == 200 and json.loads(body) == json.loads(json.dumps(DOCUMENT))
        yield url


@pytest.fixture(scope="module")
def answers():
    """Status codes of the fuzzer's requests, printed at the end (pytest -s)."""
    tally: Counter = Counter()
    yield tally
    print(f"\nfuzzing: {sum(tally.values())} requests, by status: {dict(sorted(tally.items()))}")


@pytest.mark.slow
@served_api.parametrize()
def test_the_served_api_conforms_to_its_document_under_fuzzing(case, served_url, answers):
    """Every check (no server error, documented status codes, content types, headers
    and response schemas, invalid data rejected, valid data accepted, 405 for methods
    outside the document) on generated requests, valid and invalid."""
    response = case.call_and_validate(base_url=served_url)
    answers[response.status_code] += 1
