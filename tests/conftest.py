"""Shared fixtures: a fresh MariaDB database for the session, and moto in server mode
(real HTTP, so boto3 and s3fs in this process and in subprocesses talk to it alike)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import their helpers (kedro_project, ...)

MYSQL_SERVER = os.environ.get("CHURN_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306")
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@contextlib.contextmanager
def _scratch_database(server_url, name: str) -> Iterator[str]:
    """Create database ``name`` on the server, yield its URL, drop it afterwards."""
    import sqlalchemy as sa

    engine = sa.create_engine(server_url, connect_args={"connect_timeout": 3})
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        engine.dispose()


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """SQLAlchemy URL of a database created for this test session on the MariaDB at
    127.0.0.1:3306 (override with CHURN_TEST_MYSQL), dropped at the end. Skips with the
    reason when the server is unreachable; under CI=true that is a failure instead."""
    import sqlalchemy as sa

    server = sa.make_url(MYSQL_SERVER)
    try:
        sa.create_engine(
            server, connect_args={"connect_timeout": 3}, poolclass=sa.NullPool
        ).connect().close()
    except sa.exc.OperationalError as exc:
        message = (
            f"MariaDB/MySQL at {server.render_as_string(hide_password=True)} is unreachable "
            f"({exc.orig}); start it with: start-stop-daemon --start --oknodo --background "
            f"--exec /usr/sbin/mariadbd"
        )
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    with _scratch_database(server, f"churn_test_{uuid.uuid4().hex[:10]}") as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto server on a free 127.0.0.1 port (S3, Secrets Manager, EventBridge, SQS, ...).
    Sets AWS_ENDPOINT_URL and test credentials in os.environ for the session, so plain
    boto3/s3fs clients, here and in subprocesses, reach it. Yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in [*AWS_TEST_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**AWS_TEST_ENV, "AWS_ENDPOINT_URL": endpoint})
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def create_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket on the S3 server at ``endpoint``; returns its name (a fresh one by default)."""
    import boto3

    name = name or f"churn-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server."""
    return create_bucket(s3_endpoint)


@pytest.fixture
def bucket_factory(s3_endpoint: str) -> Callable[[str | None], str]:
    """create_bucket bound to the session's moto server."""
    return lambda name=None: create_bucket(s3_endpoint, name)


@pytest.fixture
def fresh_mysql_url(mysql_url: str) -> Iterator[str]:
    """Like mysql_url, but a database of its own for one test (exactly-once state would
    otherwise carry over between tests that load objects of the same name)."""
    import sqlalchemy as sa

    url = sa.make_url(mysql_url)
    with _scratch_database(
        url.set(database=None), f"{url.database}_{uuid.uuid4().hex[:6]}"
    ) as fresh:
        yield fresh


@pytest.fixture(scope="session")
def tls_mariadb(tmp_path_factory):
    """A MariaDB of the session's own that plays RDS: TLS required, a certificate signed by
    a throwaway CA, an application user with a password (tests/tls_mariadb.py). Skips when
    mariadbd is not installed; under CI=true that is a failure instead."""
    import tls_mariadb as tls

    if not (Path(tls.MARIADBD).is_file() and Path(tls.INSTALL_DB).is_file()):
        message = f"no {tls.MARIADBD} / {tls.INSTALL_DB} to start a TLS MariaDB"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    server, process = tls.start(tmp_path_factory.mktemp("tls-mariadb"), free_port())
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except Exception:
            process.kill()


@pytest.fixture
def rds(tls_mariadb, s3_endpoint):
    """RDS as the stack makes it: a fresh database on the TLS MariaDB, and the Secrets
    Manager secret (moto) with the keys RDS and the target attachment write. Yields a dict:
    url (the application user's, with the CA), secret (its JSON), secret_arn, password,
    ca_bundle (the CA that signed the server's certificate)."""
    import boto3

    name = tls_mariadb.create_database(f"churn_rds_{uuid.uuid4().hex[:10]}")
    secret = {
        "username": tls_mariadb.user,
        "password": tls_mariadb.password,
        "dbname": name,
        "engine": "mysql",
        "host": tls_mariadb.host,
        "port": tls_mariadb.port,
    }
    arn = boto3.client("secretsmanager").create_secret(
        Name=f"churn/rds-{uuid.uuid4().hex[:8]}", SecretString=json.dumps(secret)
    )["ARN"]
    try:
        yield {
            "url": tls_mariadb.url(name),
            "secret": secret,
            "secret_arn": arn,
            "password": tls_mariadb.password,
            "ca_bundle": str(tls_mariadb.ca_bundle),
        }
    finally:
        tls_mariadb.admin(f"DROP DATABASE IF EXISTS `{name}`")
