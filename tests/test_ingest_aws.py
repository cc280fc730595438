"""The aws environment: `kedro run --pipeline ingest_raw --env aws` with the bucket on a
moto server, the RDS connection in a Secrets Manager secret (moto) and a MariaDB of the
tests' own playing RDS (TLS required, tests/tls_mariadb.py). The password never shows in
what the run prints, writes or runs with, at any log level."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from kedro_project import BIN, env, make_project, run
from test_ingest import HEADER, SAMPLE, good_rows

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def put_secret(value: dict) -> str:
    name = f"churn/rds-{uuid.uuid4().hex[:8]}"
    return boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(value))[
        "ARN"
    ]


def test_an_object_under_raw_is_ingested_into_mysql_with_the_secret_s_credentials(
    tmp_path, s3_bucket, rds
):
    secret = rds["secret_arn"]
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
        "--pipelines",
        "ingest_raw",
        "--env",
        "aws",
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET=secret,
        CHURN_DB_CA_BUNDLE=rds["ca_bundle"],
    )
    again = run(
        project,
        "kedro",
        "run",
        "--pipelines",
        "ingest_raw",
        "--env",
        "aws",
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET=secret,
        CHURN_DB_CA_BUNDLE=rds["ca_bundle"],
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
        "--pipelines",
        "ingest_raw",
        "--env",
        "aws",
        check=False,
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET=secret,
        CHURN_DB_CA_BUNDLE=rds["ca_bundle"],
    )
    missing = run(
        project,
        "kedro",
        "run",
        "--pipelines",
        "ingest_raw",
        "--env",
        "aws",
        check=False,
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET="churn/no-such-secret",
        CHURN_DB_CA_BUNDLE=rds["ca_bundle"],
    )

    assert result.returncode != 0 and "Access denied" in result.stderr
    assert rds["password"] not in result.stdout + result.stderr
    assert (
        missing.returncode != 0
        and "secret 'churn/no-such-secret': cannot read it" in missing.stderr
    )


DEBUG_LOGGING = """
version: 1
disable_existing_loggers: False
formatters:
  simple:
    format: "%(asctime)s %(levelname)s %(name)s: %(message)s"
handlers:
  console:
    class: logging.StreamHandler
    level: DEBUG
    formatter: simple
    stream: ext://sys.stderr
loggers:
  kedro: {level: DEBUG}
  churn_kedro: {level: DEBUG}
  botocore: {level: DEBUG}
  boto3: {level: DEBUG}
  urllib3: {level: DEBUG}
  s3fs: {level: DEBUG}
  sqlalchemy.engine: {level: DEBUG}
  sqlalchemy.pool: {level: DEBUG}
root:
  level: DEBUG
  handlers: [console]
"""


def descendants(pid: int) -> list[int]:
    """pid and every process under it (from /proc)."""
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
                    frontier.append(int(entry.name))
    return found


def test_at_debug_the_password_is_in_no_output_report_or_process_argument(tmp_path, s3_bucket, rds):
    """Every logger at DEBUG (Kedro's config and hook logs, botocore's request and response
    bodies, SQLAlchemy's statements): the secret's password shows nowhere."""
    logging_config = tmp_path / "debug-logging.yml"
    logging_config.write_text(DEBUG_LOGGING)
    boto3.client("s3").put_object(
        Bucket=s3_bucket,
        Key="raw/insurance_data_2026-11-02_06-00-00.csv",
        Body=(HEADER + good_rows(1, 5)).encode(),
    )
    project = make_project(tmp_path / "project")
    environment = env(
        CHURN_BUCKET=s3_bucket,
        CHURN_DB_SECRET=rds["secret_arn"],
        CHURN_DB_CA_BUNDLE=rds["ca_bundle"],
        KEDRO_LOGGING_CONFIG=str(logging_config),
    )
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    arguments: list[str] = []
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [str(BIN / "kedro"), "run", "--pipelines", "ingest_raw", "--env", "aws"],
            cwd=project,
            env=environment,
            stdout=out,
            stderr=err,
        )
        while process.poll() is None:  # what every process of the run was started with
            for pid in descendants(process.pid):
                try:
                    arguments.append(Path(f"/proc/{pid}/cmdline").read_text())
                except OSError:
                    pass
            time.sleep(0.05)
    output = stdout.read_text() + stderr.read_text()

    assert process.returncode == 0, output[-5000:]
    assert "DEBUG botocore" in output and "DEBUG kedro" in output  # DEBUG really was on
    assert "Response body" in output  # botocore logged bodies, just not the secret's
    engine = sa.create_engine(rds["url"])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT rows_loaded FROM ingestion_log").all() == [(5,)]
    engine.dispose()
    report = (
        boto3.client("s3")
        .get_object(Bucket=s3_bucket, Key="reporting/ingestion_raw.json")["Body"]
        .read()
        .decode()
    )
    assert arguments and any("ingest_raw" in a for a in arguments)
    for name, text in {"output": output, "report": report, "arguments": "".join(arguments)}.items():
        assert rds["password"] not in text, f"the password is in the {name}"
    for path in project.rglob("*"):
        if path.is_file():
            assert rds["password"].encode() not in path.read_bytes(), path
