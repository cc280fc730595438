"""Load test of the local server (`make serve`: waitress) on 127.0.0.1.

    python benchmarks/bench_load.py            # full
    python benchmarks/bench_load.py --quick    # smoke run: fewer requests

The server runs as `make serve` runs it (`python -m churn_kedro.serving`, default
options: 4 threads, 100 connections), in its own process, serving a CatBoost champion
fitted on the bundled sample (benchmarks/bench_serving.py's models). Clients are threads
of this process, each with its own keep-alive connection, sending POST /predict one after
the other. Scenarios:
  single rows       C clients x N requests of 1 instance
  batches           C clients x N requests of 100 instances
  behind stalls     the single-row scenario while 50 other connections sit stalled
                    (half a request line, then nothing): they hold no worker thread
Printed per scenario: requests, errors (anything but a 200, or no answer), wall time,
requests/s, and latency p50 / p99 / max. Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_serving import build, instances


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(registry: str, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "churn_kedro.serving", "--port", str(port), "--registry", registry],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.2)


def client(port: int, body: bytes, count: int) -> tuple[list[float], int]:
    """``count`` requests on one keep-alive connection: (latencies in s, errors)."""
    times, errors = [], 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    for _ in range(count):
        start = time.perf_counter()
        try:
            connection.request("POST", "/predict", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
        except OSError:
            errors += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        times.append(time.perf_counter() - start)
    connection.close()
    return times, errors


def scenario(name: str, port: int, body: bytes, clients: int, requests: int) -> None:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: client(port, body, requests), range(clients)))
    wall = time.perf_counter() - start
    times = sorted(t for result in results for t in result[0])
    errors = sum(result[1] for result in results)
    p50, p99 = times[len(times) // 2], times[max(0, int(len(times) * 0.99) - 1)]
    print(
        f"{name:<34} {clients:>11} x {requests:<4} {len(times):>6} {errors:>6} {wall:>7.1f} s "
        f"{len(times) / wall:>7.0f} {p50 * 1e3:>7.1f} {p99 * 1e3:>7.1f} {times[-1] * 1e3:>7.1f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    requests = 25 if args.quick else 250
    with tempfile.TemporaryDirectory() as tmp:
        registry, data, schema = build(Path(tmp) / "registry", quick=args.quick)
        registry.promote("catboost", "benchmark")
        one = json.dumps({"instances": instances(data, schema, 1)}).encode()
        hundred = json.dumps({"instances": instances(data, schema, 100)}).encode()
        port = free_port()
        server = start_server(registry.url, port)
        try:
            print(
                f"{'scenario':<34} {'clients x requests':>18} {'done':>6} {'errors':>6} "
                f"{'wall':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
            )
            scenario("single rows", port, one, 16, requests)
            scenario("batches of 100 rows", port, hundred, 8, requests // 5)
            stalled = []
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")
                stalled.append(sock)
            scenario("single rows, 50 stalled connections", port, one, 16, requests)
            for sock in stalled:
                sock.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
