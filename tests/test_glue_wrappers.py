"""The Glue wrappers run as Glue runs them: a fresh process from an empty directory, the
job's arguments plus Glue's own, against moto (S3, Secrets Manager) and a MariaDB that
requires TLS (tests/tls_mariadb.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from test_ingest import HEADER, good_rows

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
JDBC_JAR = Path("/usr/share/java/mariadb-java-client.jar")
GLUE_ARGS = [
    "--JOB_NAME",
    "churn-job",
    "--JOB_ID",
    "j_1",
    "--JOB_RUN_ID",
    "jr_1",
    "--job-bookmark-option",
    "job-bookmark-disable",
    "--enable-continuous-cloudwatch-log",
    "true",
]


@pytest.fixture
def job(tmp_path, s3_bucket, rds):
    secret = rds["secret_arn"]
    workdir = tmp_path / "glue"
    workdir.mkdir()

    def run(
        script: str,
        *extra: str,
        wrapper_dir: Path = REPO / "glue_wrappers",
        kedro_env: str = "aws",
        environ: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                str(wrapper_dir / script),
                *GLUE_ARGS,
                "--TempDir",
                f"s3://{s3_bucket}/tmp/",
                "--env",
                kedro_env,
                "--bucket",
                s3_bucket,
                "--db-secret-id",
                secret,
                "--db-ca-bundle",
                rds["ca_bundle"],
                *extra,
            ],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **(environ or {})},
        )

    def rows(sql: str) -> list[tuple]:
        engine = sa.create_engine(rds["url"])
        with engine.connect() as conn:
            result = conn.exec_driver_sql(sql).all()
        engine.dispose()
        return result

    return run, rows


def put(bucket: str, key: str, text: str) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())


def test_ingest_processed_wrapper_loads_the_processed_snapshot(job, s3_bucket):
    run, rows = job
    body = "".join(
        line + (",train\n" if i % 4 else ",holdout\n")
        for i, line in enumerate(good_rows(1, 8).splitlines())
    )
    put(
        s3_bucket,
        "processed/insurance_data_2026-11-01_06-00-00.csv",
        HEADER.strip() + ",split\n" + body,
    )

    result = run("ingest_processed.py")

    assert result.returncode == 0, result.stderr[-3000:]
    assert rows("SELECT split, COUNT(*) FROM policies_processed GROUP BY split ORDER BY split") == [
        ("holdout", 2),
        ("train", 6),
    ]


def test_ingest_raw_wrapper_exits_non_zero_naming_the_broken_object_after_loading_the_rest(
    job, s3_bucket
):
    run, rows = job
    put(
        s3_bucket,
        "raw/insurance_data_2026-11-01_06-00-00.csv",
        HEADER.replace(",", "\t") + "1\t2\n",
    )
    put(s3_bucket, "raw/insurance_data_2026-11-02_06-00-00.csv", HEADER + good_rows(1, 5))

    result = run("ingest_raw.py")

    assert result.returncode != 0
    assert (
        f"s3://{s3_bucket}/raw/insurance_data_2026-11-01_06-00-00.csv: missing required column(s)"
        in result.stderr
    )
    assert rows("SELECT source_file, rows_loaded FROM ingestion_log") == [
        ("raw/insurance_data_2026-11-02_06-00-00.csv", 5)
    ]


def test_a_wrapper_alone_runs_from_the_wheel_with_the_packaged_configuration(
    job, s3_bucket, tmp_path
):
    """On Glue the script is downloaded alone: the configuration comes as the archive
    `kedro package` builds, from S3 (--conf-source)."""
    run, rows = job
    archive = tmp_path / "conf-churn_kedro.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member in ("base", "aws", "logging.yml"):  # conf/local stays on the laptop
            tar.add(REPO / "conf" / member, arcname=f"conf/{member}")
    boto3.client("s3").upload_file(str(archive), s3_bucket, "glue/conf-churn_kedro.tar.gz")
    alone = tmp_path / "downloaded"
    alone.mkdir()
    (alone / "ingest_raw.py").write_text((REPO / "glue_wrappers/ingest_raw.py").read_text())
    put(s3_bucket, "raw/insurance_data_2026-11-02_06-00-00.csv", HEADER + good_rows(1, 5))

    without = run("ingest_raw.py", wrapper_dir=alone)
    result = run(
        "ingest_raw.py",
        "--conf-source",
        f"s3://{s3_bucket}/glue/conf-churn_kedro.tar.gz",
        wrapper_dir=alone,
    )

    assert without.returncode != 0 and "--conf-source" in without.stderr
    assert result.returncode == 0, result.stderr[-3000:]
    assert rows("SELECT rows_loaded FROM ingestion_log") == [(5,)]


def glue_spark_stand_in(bucket: str, mirror: Path) -> dict[str, str]:
    """What a Glue Spark job's environment gives the wrapper, played by local Spark: the
    session's master, its JDBC driver (--extra-jars on Glue) and a file system for s3://
    (EMRFS on Glue). Hadoop's S3 client is not installed here, so Spark's reads of
    s3://<bucket>/ are served from ``mirror``, a copy of the bucket's objects (Hadoop's
    ViewFileSystemOverloadScheme); the listing, checksums, secret, configuration and CA
    bundle still come from moto. The driver binds 127.0.0.1, no web UI."""
    settings = {
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.viewfs.ViewFileSystemOverloadScheme",
        f"spark.hadoop.fs.viewfs.mounttable.{bucket}.linkFallback": mirror.as_uri(),
    }
    confs = " ".join(f"--conf {key}={value}" for key, value in settings.items())
    return {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_SUBMIT_ARGS": f"--master local[2] --jars {JDBC_JAR} {confs} pyspark-shell",
    }


def test_ingest_raw_wrapper_on_aws_spark_loads_an_object_exactly_once(job, s3_bucket, tmp_path):
    """glue_wrappers/ingest_raw.py --env aws_spark as the Spark ingestion job runs it: the
    Spark engine reads and validates the object, stages its rows over JDBC with the
    secret's TLS, and logs it; a rerun (a redelivered event, the sweep) loads nothing."""
    pytest.importorskip("pyspark")
    if not JDBC_JAR.is_file():
        pytest.skip(f"no {JDBC_JAR}: apt-get install libmariadb-java (.ci/run does)")
    run, rows = job
    key = "raw/insurance_data_2026-11-02_06-00-00.csv"
    body = HEADER + good_rows(1, 7) + "8,forty,100.0,auto,0,0\n"  # one row to quarantine
    put(s3_bucket, key, body)
    mirror = tmp_path / "mirror"
    (mirror / "raw").mkdir(parents=True)
    (mirror / key).write_text(body)
    environ = glue_spark_stand_in(s3_bucket, mirror)

    first = run("ingest_raw.py", kedro_env="aws_spark", environ=environ)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Spark 3.5.4 session: master local[2]" in first.stderr
    assert f"{key}: 7 rows staged, 1 quarantined (JDBC)" in first.stderr
    log = (
        "SELECT source_file, rows_read, rows_loaded, rows_rejected, finished_at FROM ingestion_log"
    )
    logged = rows(log)
    assert [r[:4] for r in logged] == [(key, 8, 7, 1)]
    assert rows("SELECT COUNT(*), MIN(customer_id), MAX(customer_id) FROM policies_raw") == [
        (7, "1", "7")
    ]
    assert rows("SELECT source_file, `row_number` FROM quarantine") == [(key, 8)]

    second = run("ingest_raw.py", kedro_env="aws_spark", environ=environ)
    assert second.returncode == 0, second.stderr[-3000:]
    assert rows(log) == logged  # the same one row, untouched
    assert rows("SELECT COUNT(*) FROM policies_raw") == [(7,)]
    report = boto3.client("s3").get_object(Bucket=s3_bucket, Key="reporting/ingestion_raw.json")
    report = json.loads(report["Body"].read())
    assert report["skipped"] == [key] and report["loaded"] == []
    assert "rows staged" not in second.stderr
