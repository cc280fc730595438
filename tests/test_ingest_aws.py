"""The aws environment: `kedro run --pipeline ingest_raw --env aws` with the bucket on a
moto server, the RDS connection in a Secrets Manager secret (moto) and the local
MariaDB playing RDS. The password never shows in what the run prints."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
import sqlalchemy as sa
from kedro_project import make_project, run
from test_ingest import HEADER, SAMPLE, good_rows

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


@pytest.fixture
def rds(fresh_mysql_url):
    """A MariaDB user with a password, on a fresh database, and the secret that holds them."""
    url = sa.make_url(fresh_mysql_url)
    user, password = f"churn_{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex}"
    admin = sa.create_engine(url)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
        conn.execute(sa.text(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'"))
        for host in ("%", "localhost"):
            conn.execute(sa.text(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'{host}'"))
    yield {
        "url": url,
        "user": user,
        "password": password,
        "secret": {
            "engine": "mysql",
            "host": "127.0.0.1",
            "port": url.port or 3306,
            "username": user,
            "password": password,
            "dbname": url.database,
        },
    }
    with admin.connect() as conn:
        for host in ("%", "localhost"):
            conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
    admin.dispose()


def put_secret(value: dict) -> str:
    name = f"churn/rds-{uuid.uuid4().hex[:8]}"
    return boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(value))[
        "ARN"
    ]


def test_an_object_under_raw_is_ingested_into_mysql_with_the_secret_s_credentials(
    tmp_path, s3_bucket, rds
):
    secret = put_secret(rds["secret"])
    s3 = boto3.client("s3")
    s3.upload_file(str(SAMPLE), s3_bucket, f"raw/{SAMPLE.name}")
    s3.put_object(
        Bucket=s3_bucket,
        Key="elsewhere/insurance_data_2026-11-02_06-00-00.csv",
        Body=(HEADER + good_rows(1, 5)).encode(),
    )
    project = make_project(tmp_path)

    result = run(
        project,
        "kedro",
        "run",
        "--pipeline",
        "ingest_raw",
        "--env",
        "aws",
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET=secret,
    )
    again = run(
        project,
        "kedro",
        "run",
        "--pipeline",
        "ingest_raw",
        "--env",
        "aws",
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET=secret,
    )

    engine = sa.create_engine(rds["url"])
    with engine.connect() as conn:
        assert conn.exec_driver_sql(
            "SELECT source_file, rows_loaded, rows_rejected FROM ingestion_log"
        ).all() == [(f"raw/{SAMPLE.name}", 4972, 28)]
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM policies_raw").scalar() == 4972
    engine.dispose()
    for output in (result.stdout + result.stderr, again.stdout + again.stderr):
        assert rds["password"] not in output
    report = (
        s3.get_object(Bucket=s3_bucket, Key="reporting/ingestion_raw.json")["Body"].read().decode()
    )
    assert json.loads(report)["skipped"] == [f"raw/{SAMPLE.name}"] and rds["password"] not in report
    assert not (project / "data").joinpath("churn.db").exists()


def test_a_wrong_secret_fails_without_revealing_it(tmp_path, s3_bucket, rds):
    secret = put_secret({**rds["secret"], "password": rds["password"] + "-wrong"})
    boto3.client("s3").upload_file(str(SAMPLE), s3_bucket, f"raw/{SAMPLE.name}")
    project = make_project(tmp_path)

    result = run(
        project,
        "kedro",
        "run",
        "--pipeline",
        "ingest_raw",
        "--env",
        "aws",
        check=False,
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET=secret,
    )
    missing = run(
        project,
        "kedro",
        "run",
        "--pipeline",
        "ingest_raw",
        "--env",
        "aws",
        check=False,
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET="churn/no-such-secret",
    )

    assert result.returncode != 0 and "Access denied" in result.stderr
    assert rds["password"] not in result.stdout + result.stderr
    assert (
        missing.returncode != 0
        and "secret 'churn/no-such-secret': cannot read it" in missing.stderr
    )
