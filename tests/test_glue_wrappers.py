"""The Glue wrappers run as Glue runs them: a fresh process from an empty directory, the
job's arguments plus Glue's own, against moto (S3, Secrets Manager) and a MariaDB that
requires TLS (tests/tls_mariadb.py)."""

from __future__ import annotations

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
        script: str, *extra: str, wrapper_dir: Path = REPO / "glue_wrappers"
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                str(wrapper_dir / script),
                *GLUE_ARGS,
                "--TempDir",
                f"s3://{s3_bucket}/tmp/",
                "--env",
                "aws",
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
            timeout=300,
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
