"""`python -m churn_kedro.serving --host 127.0.0.1 --port 8080` (what `make serve` runs).

The registry comes from CHURN_REGISTRY (default data/06_models/registry), the
champion.json re-read interval from CHURN_CHAMPION_REFRESH_SECONDS, the largest batch
from CHURN_MAX_BATCH; the options below override them.
"""

from __future__ import annotations

import argparse
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from churn_kedro.serving.app import Application
from churn_kedro.serving.validation import RequestError

MAX_BODY_BYTES = 6 * 1024 * 1024  # the Lambda payload limit: the same API both ways


def make_server(app: Application, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                response = app._error(
                    RequestError(413, f"body of {length} bytes, the maximum is {MAX_BODY_BYTES}")
                )
            else:
                body = self.rfile.read(length) if length else b""
                response = app.handle(
                    self.command, self.path.split("?")[0], dict(self.headers), body
                )
            data = response.encoded()
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        def log_message(self, format: str, *args) -> None:
            logging.getLogger("churn_kedro.serving.http").info(
                "%s " + format, self.client_address[0], *args
            )

    return ThreadingHTTPServer((host, port), Handler)


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
        "--refresh-seconds", type=float, help="re-read champion.json at most this often"
    )
    parser.add_argument("--max-batch", type=int, help="largest accepted batch of instances")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = Application(args.registry, args.refresh_seconds, args.max_batch)
    server = make_server(app, args.host, args.port)
    try:
        version = app.champions.get()["version"]
    except Exception as exc:  # still serve: /health says 503 until a champion appears
        version = f"none ({exc})"
    print(
        f"serving {app.registry} (champion {version}) on http://{args.host}:{server.server_port}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
