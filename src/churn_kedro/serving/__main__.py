"""`python -m churn_kedro.serving --host 127.0.0.1 --port 8080` (what `make serve` runs).

The API on waitress, a pure-Python production WSGI server: a fixed pool of worker
threads, connections read asynchronously (a slow or stalled client holds no thread),
bodies bounded before they are read, idle connections closed after --channel-timeout.
Waitress's own errors (a malformed request, a body over the limit) answer in the API's
JSON error shape, like the API's.

The registry is --registry PATH|s3://..., else $CHURN_REGISTRY, else the `model_registry`
path of the Kedro environment given by --env (as churn-registry finds it), else
data/06_models/registry. The champion.json re-read interval comes from
CHURN_CHAMPION_REFRESH_SECONDS, the largest batch from CHURN_MAX_BATCH; the options
below override them.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

from churn_kedro.serving.app import MAX_BODY_BYTES, Application

logger = logging.getLogger("churn_kedro.serving.http")

THREADS = 4  # requests answered at once (numpy releases the GIL for the model's arithmetic)
CONNECTION_LIMIT = 100  # open connections; more wait in the listen backlog
# Idle or stalled connections are closed after this many seconds: above the 60 s idle
# timeout of a load balancer in front (AWS ALB's default), which must close first.
CHANNEL_TIMEOUT = 75


class WSGIApplication:
    """The Application as a WSGI callable (waitress has read and bounded the body)."""

    def __init__(self, app: Application):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response) -> list[bytes]:
        started = time.perf_counter()
        headers = {
            key[5:].replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)  # waitress allows digits only
        body = environ["wsgi.input"].read(length) if length else b""
        method = environ["REQUEST_METHOD"]
        response = self.app.handle(method, environ.get("PATH_INFO") or "/", headers, body)
        data = response.encoded()
        start_response(
            f"{response.status} {HTTPStatus(response.status).phrase}",
            [*response.headers.items(), ("Content-Length", str(len(data)))],
        )
        logger.info(
            "%s %s %s %d %.1f ms",
            environ.get("REMOTE_ADDR"),
            method,
            environ.get("PATH_INFO"),
            response.status,
            1000 * (time.perf_counter() - started),
        )
        return [] if method == "HEAD" else [data]


class JsonErrorTask(ErrorTask):
    """Waitress's answer to a request it refuses before the application sees it
    (400 malformed, 413 body too large, 431 headers too large, 500), in the API's
    error shape instead of waitress's plain text."""

    def execute(self) -> None:
        error = self.request.error
        app = self.channel.server.churn_app
        response = app.error(error.code, f"{error.reason}: {error.body}")
        body = response.encoded()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend(response.headers.items())
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def make_server(
    app: Application,
    host: str,
    port: int,
    threads: int = THREADS,
    connection_limit: int = CONNECTION_LIMIT,
    channel_timeout: int = CHANNEL_TIMEOUT,
):
    """A waitress server for ``app`` on host:port (0: a free port, see
    ``server.effective_port``); ``server.run()`` serves until ``server.close()``."""
    server = create_server(
        WSGIApplication(app),
        host=host,
        port=port,
        threads=threads,
        connection_limit=connection_limit,
        channel_timeout=channel_timeout,
        cleanup_interval=max(1, min(30, channel_timeout // 2)),
        max_request_body_size=MAX_BODY_BYTES,
        ident="churn-kedro",
        clear_untrusted_proxy_headers=True,
    )
    server.channel_class = JsonErrorChannel  # the one TCP server's connections
    server.churn_app = app  # what JsonErrorTask answers with
    return server


def registry_location(registry: str | None, env: str | None) -> str | None:
    """--registry, else $CHURN_REGISTRY, else the --env's catalog (as churn-registry)."""
    if registry or os.environ.get("CHURN_REGISTRY") or not env:
        return registry or os.environ.get("CHURN_REGISTRY")
    from churn_kedro.registry_cli import _registry_from_conf

    return _registry_from_conf(env)


def schema_differences(env: str | None, card: dict[str, Any]) -> list[str]:
    """The schema keys whose rules differ between the Kedro environment's parameters
    and the champion's card (requests are checked against the card's)."""
    import warnings

    from kedro.config import OmegaConfigLoader

    from churn_kedro.schema import Schema
    from churn_kedro.settings import CONFIG_LOADER_ARGS

    warnings.filterwarnings("ignore", message="register_new_resolver")
    loader = OmegaConfigLoader(conf_source="conf", env=env, **CONFIG_LOADER_ARGS)
    configured = Schema.from_params(loader["parameters"]["schema"]).to_dict()
    served = card.get("schema") or {}  # (a card older than a schema key lacks it)
    return sorted(key for key in configured if key in served and configured[key] != served[key])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m churn_kedro.serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--registry", help="registry folder or s3:// prefix (default: $CHURN_REGISTRY)"
    )
    parser.add_argument(
        "--env", help="Kedro environment whose catalog names the registry (as churn-registry)"
    )
    parser.add_argument(
        "--refresh-seconds", type=float, help="re-read champion.json at most this often"
    )
    parser.add_argument("--max-batch", type=int, help="largest accepted batch of instances")
    parser.add_argument(
        "--threads", type=int, default=THREADS, help=f"requests answered at once ({THREADS})"
    )
    parser.add_argument(
        "--connection-limit",
        type=int,
        default=CONNECTION_LIMIT,
        help=f"open connections at most ({CONNECTION_LIMIT})",
    )
    parser.add_argument(
        "--channel-timeout",
        type=int,
        default=CHANNEL_TIMEOUT,
        help=f"close a connection idle or stalled this many seconds ({CHANNEL_TIMEOUT})",
    )
    args = parser.parse_args(argv)
    if (Path.cwd() / "conf" / "logging.yml").is_file():  # run from a project: its logging
        from churn_kedro.config import configure_logging  # build-time module, not in the image

        configure_logging(Path.cwd() / "conf")
    app = Application(
        registry_location(args.registry, args.env), args.refresh_seconds, args.max_batch
    )
    server = make_server(
        app, args.host, args.port, args.threads, args.connection_limit, args.channel_timeout
    )
    try:
        champion = app.champions.get()
        version = champion["version"]
    except Exception as exc:  # still serve: /health says 503 until a champion appears
        champion, version = None, f"none ({exc})"
    if args.env and champion is not None:
        differing = schema_differences(args.env, champion["card"])
        if differing:
            logger.warning(
                "the champion %s was trained with other %s rules than conf/%s's schema: "
                "requests are checked against the champion's (retrain to serve the new ones)",
                version,
                ", ".join(differing),
                args.env,
            )
    print(
        f"serving {app.registry} (champion {version}) on "
        f"http://{args.host}:{server.effective_port}",
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
