"""The registry under concurrency: do the S3 servers the tests use make conditional PUTs
atomic, what do 16 simultaneous promotions cost, and what does reading the benchmark
rows cost once there is one file per run (see docs/architecture.md: model registry).

python benchmarks/bench_registry.py           # 100 rounds, 365 run files
python benchmarks/bench_registry.py --quick   # 10 rounds, 50 run files
"""

from __future__ import annotations

import argparse
import collections
import io
import multiprocessing
import socket
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

import boto3
import botocore.config
import numpy as np
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from seaweedfs import CREDENTIALS, seaweedfs_s3  # noqa: E402

from churn_kedro.registry import SERVING_FILE, ModelRegistry  # noqa: E402

WRITERS = 16
BUCKET = "bench-registry"


def conditional_put_rounds(endpoint: str, credentials: dict, rounds: int) -> str:
    """Each round: WRITERS threads PUT the same key at once with If-Match the same ETag.
    An atomic server lets exactly one through per round."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=botocore.config.Config(max_pool_connections=WRITERS * 2),
        **credentials,
    )
    etag = client.put_object(Bucket=BUCKET, Key="cas", Body=b"start")["ETag"]
    winners = collections.Counter()
    started = time.perf_counter()
    with ThreadPoolExecutor(WRITERS) as pool:
        for r in range(rounds):
            barrier = threading.Barrier(WRITERS)

            def put(i: int, r=r, etag=etag, barrier=barrier) -> bool:
                barrier.wait()
                try:
                    client.put_object(
                        Bucket=BUCKET, Key="cas", Body=f"{r}-{i}".encode(), IfMatch=etag
                    )
                    return True
                except ClientError:
                    return False

            winners[sum(pool.map(put, range(WRITERS)))] += 1
            etag = client.head_object(Bucket=BUCKET, Key="cas")["ETag"]
    per_round = (time.perf_counter() - started) / rounds
    spread = ", ".join(f"{n} winner(s): {count} rounds" for n, count in sorted(winners.items()))
    return f"{spread}; {per_round * 1000:.0f} ms per round"


def _promote(start: float, root: str, options: dict | None, i: int) -> None:
    time.sleep(max(0.0, start - time.time()))
    ModelRegistry(root, options).promote(f"v{1 + i % 2}", f"promotion {i}")


def concurrent_promotions(root: str, options: dict | None, processes: bool) -> str:
    registry = ModelRegistry(root, options)
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.arange(4.0))
    for version in ("v1", "v2"):
        registry.register(version, None, {"version": version}, {SERVING_FILE: buffer.getvalue()})
    pool = (
        ProcessPoolExecutor(WRITERS, mp_context=multiprocessing.get_context("fork"))
        if processes
        else ThreadPoolExecutor(WRITERS)
    )
    start = time.time() + (3.0 if processes else 0.5)
    with pool:
        list(
            pool.map(
                _promote, [start] * WRITERS, [root] * WRITERS, [options] * WRITERS, range(WRITERS)
            )
        )
    elapsed = time.time() - start
    doc = registry.champion()
    recorded = 1 + len(doc["history"])
    return f"{recorded} of {WRITERS} recorded, {elapsed:.2f} s until the last one returned"


def benchmark_reads(root: str, options: dict | None, runs: int) -> str:
    registry = ModelRegistry(root, options)
    registry.fs.makedirs(registry.root, exist_ok=True)
    rows = [{"run_at": "r", "model": f"m{i}", "holdout_roc_auc": 0.8} for i in range(4)]
    for _ in range(runs):
        registry.append_benchmarks(rows)
    started = time.perf_counter()
    table = registry.benchmarks()
    return f"{len(table)} rows from {runs} files in {time.perf_counter() - started:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds, 50 run files")
    quick = parser.parse_args(argv).quick
    rounds, runs = (10, 50) if quick else (100, 365)

    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    moto_endpoint = f"http://127.0.0.1:{port}"
    moto_credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    moto_options = {"key": "testing", "secret": "testing", "endpoint_url": moto_endpoint}
    boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1", **moto_credentials
    ).create_bucket(Bucket=BUCKET)
    try:
        print(
            f"moto 5 server, {WRITERS} simultaneous If-Match PUTs x {rounds} rounds: "
            f"{conditional_put_rounds(moto_endpoint, moto_credentials, rounds)}"
        )
        print(
            f"moto, {WRITERS} simultaneous promote() (threads): "
            f"{concurrent_promotions(f's3://{BUCKET}/promote', moto_options, False)}"
        )
        print(f"moto, benchmarks(): {benchmark_reads(f's3://{BUCKET}/reads', moto_options, runs)}")
    finally:
        moto.stop()

    with seaweedfs_s3(BUCKET) as environment:
        endpoint = environment["AWS_ENDPOINT_URL"]
        credentials = {
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }
        options = {
            "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "endpoint_url": endpoint,
        }
        print(
            f"SeaweedFS, {WRITERS} simultaneous If-Match PUTs x {rounds} rounds: "
            f"{conditional_put_rounds(endpoint, credentials, rounds)}"
        )
        print(
            f"SeaweedFS, {WRITERS} simultaneous promote() (threads): "
            f"{concurrent_promotions(f's3://{BUCKET}/promote', options, False)}"
        )
        print(f"SeaweedFS, benchmarks(): {benchmark_reads(f's3://{BUCKET}/reads', options, runs)}")

    with TemporaryDirectory() as folder:
        print(
            f"folder, {WRITERS} simultaneous promote() (processes): "
            f"{concurrent_promotions(f'{folder}/promote', None, True)}"
        )
        print(f"folder, benchmarks(): {benchmark_reads(f'{folder}/reads', None, runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
