"""The RDS connection as the aws environment makes it: the engine factory reads the Secrets
Manager secret (moto) at connection time and connects over TLS, verifying the server's
certificate against the configured CA bundle, to a MariaDB of the test's own that requires
TLS (tests/tls_mariadb.py)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from packaging.requirements import Requirement

from churn_kedro import database

REPO = Path(__file__).resolve().parents[1]


def put_secret(server, dbname: str, region: str = "us-east-1") -> str:
    return boto3.client("secretsmanager", region_name=region).create_secret(
        Name=f"churn/rds-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps(
            {
                "engine": "mysql",
                "host": server.host,
                "port": server.port,
                "username": server.user,
                "password": server.password,
                "dbname": dbname,
            }
        ),
    )["ARN"]


@pytest.mark.mysql
@pytest.mark.slow
def test_the_engine_factory_connects_over_tls_verified_by_the_configured_ca(
    tls_mariadb, s3_endpoint
):
    dbname = tls_mariadb.create_database(f"churn_tls_{uuid.uuid4().hex[:8]}")
    secret = put_secret(tls_mariadb, dbname)
    reference = database.secret_reference(secret, str(tls_mariadb.ca_bundle))
    assert tls_mariadb.password not in reference

    engine = database.create_engine(reference)
    try:
        database.create_tables(engine)
        with engine.connect() as conn:
            cipher = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").one()[1]
            user = conn.exec_driver_sql("SELECT CURRENT_USER()").scalar()
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert cipher, "the session is not encrypted"
    assert user.startswith(f"{tls_mariadb.user}@")
    assert {"ingestion_log", "quarantine", "churn_scores"} <= tables
    assert tls_mariadb.password not in str(engine.url) and tls_mariadb.password not in repr(engine)


@pytest.mark.mysql
@pytest.mark.slow
def test_a_server_whose_certificate_the_ca_does_not_sign_is_refused(tls_mariadb, s3_endpoint):
    dbname = tls_mariadb.create_database(f"churn_tls_{uuid.uuid4().hex[:8]}")
    secret = put_secret(tls_mariadb, dbname)

    engine = database.create_engine(
        database.secret_reference(secret, str(tls_mariadb.other_ca_bundle))
    )
    with pytest.raises(sa.exc.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        engine.connect()
    engine.dispose()

    # and the server itself refuses a session without TLS (MariaDB answers "access denied"
    # to require_secure_transport; the same credentials are accepted over TLS above)
    plain = sa.create_engine(
        sa.make_url(tls_mariadb.url(dbname)).difference_update_query(["ssl_ca"]),
        connect_args={"ssl_disabled": True},
    )
    with pytest.raises(sa.exc.OperationalError, match="Access denied|secure transport"):
        plain.connect()
    plain.dispose()


def test_a_secret_without_a_ca_bundle_is_not_connected_in_clear(s3_endpoint):
    secret = boto3.client("secretsmanager").create_secret(
        Name=f"churn/rds-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"host": "h", "username": "u", "password": "p", "dbname": "d"}),
    )["ARN"]
    with pytest.raises(database.DatabaseSecretError, match="no CA bundle.*CHURN_DB_CA_BUNDLE"):
        database.create_engine(database.secret_reference(secret))
    with pytest.raises(FileNotFoundError, match="no CA bundle at /nonexistent/ca.pem"):
        database.create_engine(database.secret_reference(secret, "/nonexistent/ca.pem"))


def test_aws_region_reaches_the_secrets_manager_client(s3_endpoint, monkeypatch, tmp_path):
    """Glue and Lambda set AWS_REGION, which botocore does not read (only AWS_DEFAULT_REGION):
    a secret named without its ARN is looked up in AWS_REGION's region."""
    name = f"churn/rds-{uuid.uuid4().hex[:8]}"
    boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
        Name=name,
        SecretString=json.dumps(
            {"host": "db.example", "username": "u", "password": "p", "dbname": "d"}
        ),
    )
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert database.database_url_from_secret(name, str(ca)).host == "db.example"
    # the region of an ARN wins over the environment's
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    arn = boto3.client("secretsmanager", region_name="eu-west-1").describe_secret(SecretId=name)[
        "ARN"
    ]
    assert database.database_url_from_secret(arn, str(ca)).host == "db.example"
    with pytest.raises(database.DatabaseSecretError, match="ResourceNotFoundException"):
        database.database_url_from_secret(name, str(ca))  # not in ap-south-1


def runtime_closure() -> set[str]:
    """The distributions requirements.txt pulls in (extras and markers honoured), from the
    installed metadata: what `pip install churn_kedro` brings, without the dev tools."""
    pending = [
        Requirement(line.split("#")[0])
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    seen: set[tuple[str, frozenset]] = set()
    while pending:
        requirement = pending.pop()
        key = (re.sub(r"[-_.]+", "-", requirement.name).lower(), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(
                dependency.marker.evaluate({"extra": extra}) for extra in extras
            ):
                pending.append(dependency)
    return {name for name, _ in seen}


def test_caching_sha2_password_full_authentication_has_its_crypto_in_the_runtime_closure():
    """RDS MySQL 8.4 authenticates with caching_sha2_password; on a cold cache PyMySQL's full
    authentication encrypts the password with the server's RSA key (pymysql._auth), which
    needs `cryptography`. No MySQL 8.4 server can run on this machine (MariaDB has no
    caching_sha2_password), so this checks the two things that path needs: `cryptography`
    is in the closure of requirements.txt (PyMySQL[rsa]), and the path's encryption runs."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from pymysql import _auth

    assert {"pymysql", "cryptography"} <= runtime_closure()
    assert _auth._have_cryptography

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    salt = b"0123456789abcdefghij"
    sent = _auth.sha2_rsa_encrypt(b"pw-\xc3\xa9", salt, public)
    plain = key.decrypt(
        sent,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    )
    assert bytes(b ^ salt[i % len(salt)] for i, b in enumerate(plain)) == b"pw-\xc3\xa9\0"


@pytest.mark.mysql
@pytest.mark.slow
def test_the_bootstrap_job_creates_the_application_user_with_the_jobs_grants_only(
    tls_mariadb, s3_endpoint, tmp_path
):
    dbname = f"churn_boot_{uuid.uuid4().hex[:8]}"
    tls_mariadb.admin(f"CREATE DATABASE `{dbname}`")
    user, password = f"app_{uuid.uuid4().hex[:8]}", f"Gen-{uuid.uuid4().hex}"
    secrets = boto3.client("secretsmanager")
    base = {"engine": "mysql", "host": tls_mariadb.host, "port": tls_mariadb.port, "dbname": dbname}
    master = secrets.create_secret(
        Name=f"churn/master-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({**base, "username": "root", "password": ""}),
    )["ARN"]
    app = secrets.create_secret(
        Name=f"churn/app-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({**base, "username": user, "password": password}),
    )["ARN"]
    command = [
        sys.executable,
        str(REPO / "glue_wrappers" / "bootstrap_database.py"),
        "--JOB_NAME",
        "bootstrap",
        "--bucket",
        "unused",
        "--master-secret-id",
        master,
        "--db-secret-id",
        app,
        "--db-ca-bundle",
        str(tls_mariadb.ca_bundle),
    ]

    runs = [
        subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        for _ in range(2)  # idempotent
    ]

    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        assert f"application user {user} ready" in run.stderr
        assert password not in run.stdout + run.stderr
    engine = database.create_engine(database.secret_reference(app, str(tls_mariadb.ca_bundle)))
    try:
        database.create_tables(engine)  # what the jobs do first
        with engine.connect() as conn:
            grants = " ".join(r[0] for r in conn.exec_driver_sql("SHOW GRANTS").all())
            for forbidden in ("SELECT user FROM mysql.user", "CREATE DATABASE other_db"):
                with pytest.raises(sa.exc.OperationalError, match="denied"):
                    conn.exec_driver_sql(forbidden)
    finally:
        engine.dispose()
    assert f"GRANT {database.APP_GRANTS} ON `{dbname}`.*" in grants
    assert "ALL PRIVILEGES" not in grants and "GRANT OPTION" not in grants
    assert "REQUIRE SSL" in grants or "REQUIRE SSL" in " ".join(
        r[0] for r in _root_rows(tls_mariadb, f"SHOW CREATE USER '{user}'@'%'")
    )
    tls_mariadb.admin(f"DROP USER '{user}'@'%'; DROP DATABASE `{dbname}`")


def _root_rows(server, sql: str) -> list[tuple]:
    import pymysql

    conn = pymysql.connect(unix_socket=str(server.socket), user="root")
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        conn.close()
