"""`kedro run --pipeline retrain --env aws` against a real S3-compatible server: the same
code as locally, only the configuration differs."""

from __future__ import annotations

import json

import boto3
import pytest
from kedro_project import generate, make_project, retrain
from seaweedfs import seaweedfs_s3

from churn_kedro.registry import ModelRegistry

pytestmark = pytest.mark.slow

BUCKET = "churn-test"
SNAPSHOT = "insurance_data_2026-11-01_06-00-00.csv"


@pytest.fixture(scope="module")
def s3():
    with seaweedfs_s3(BUCKET) as environment:
        yield environment


def test_retrain_reads_raw_from_s3_and_writes_the_registry_there(s3, tmp_path):
    project = make_project(tmp_path)
    generate(
        project,
        "--rows",
        "3000",
        "--seed",
        "8",
        "--timestamp",
        "2026-11-01_06-00-00",
        out="staging",
    )
    client = boto3.client(
        "s3",
        endpoint_url=s3["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id=s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3["AWS_SECRET_ACCESS_KEY"],
    )
    client.upload_file(str(project / "staging" / SNAPSHOT), BUCKET, f"raw/{SNAPSHOT}")

    retrain(project, "--env", "aws", CHURN_BUCKET=BUCKET, **s3)

    keys = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert f"processed/{SNAPSHOT}" in keys
    champion = json.loads(
        client.get_object(Bucket=BUCKET, Key="registry/champion.json")["Body"].read()
    )
    version = champion["version"]
    assert {
        f"registry/versions/{version}/model.joblib",
        f"registry/versions/{version}/card.json",
        "reporting/roc.png",
    } <= keys
    card = json.loads(
        client.get_object(Bucket=BUCKET, Key=f"registry/versions/{version}/card.json")[
            "Body"
        ].read()
    )
    assert card["data"]["source_file"] == f"raw/{SNAPSHOT}"  # the key in ingestion_log
    # nothing was written locally: the aws environment differs only in where data lives
    assert not (project / "data/06_models").exists() and not (project / "data/03_primary").exists()
    assert any(key.startswith("registry/benchmarks/") for key in keys)
    storage_options = {
        "key": s3["AWS_ACCESS_KEY_ID"],
        "secret": s3["AWS_SECRET_ACCESS_KEY"],
        "endpoint_url": s3["AWS_ENDPOINT_URL"],
    }
    benchmarks = ModelRegistry(f"s3://{BUCKET}/registry", storage_options).benchmarks()
    assert benchmarks[benchmarks["role"] == "challenger"]["decision"].tolist() == ["promoted"]
