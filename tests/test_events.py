"""The trigger (see docs/architecture.md: AWS mapping) on moto: a put under raw/ becomes an EventBridge "Object
Created" event that the rule's pattern (churn_kedro.events) routes to its target (an
SQS queue stands in for the Glue workflow); a put elsewhere does not; and the
wrapper run for that event ingests exactly that object."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from test_ingest import HEADER, good_rows

from churn_kedro.events import object_created_pattern, object_from_event

REPO = Path(__file__).resolve().parents[1]


def test_object_from_event_reads_bucket_and_key_and_rejects_other_events():
    event = {
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "raw/x.csv"}},
    }
    assert object_from_event(event) == ("b", "raw/x.csv")
    with pytest.raises(ValueError, match="Object Deleted"):
        object_from_event({**event, "detail-type": "Object Deleted"})
    with pytest.raises(ValueError, match="no 'detail'"):
        object_from_event({"detail-type": "Object Created"})


@pytest.fixture
def rule(s3_bucket):
    """The raw rule on moto's default bus, delivering to a fresh queue; the bucket sends
    its events to EventBridge (as the template configures it)."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queue = sqs.create_queue(QueueName=f"ingest-raw-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    name = f"raw-created-{uuid.uuid4().hex[:8]}"
    events.put_rule(
        Name=name,
        EventPattern=json.dumps(object_created_pattern(s3_bucket, "raw/")),
        State="ENABLED",
    )
    events.put_targets(Rule=name, Targets=[{"Id": "workflow", "Arn": arn}])
    boto3.client("s3").put_bucket_notification_configuration(
        Bucket=s3_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    yield queue
    events.remove_targets(Rule=name, Ids=["workflow"])
    events.delete_rule(Name=name)


def delivered(queue: str) -> list[dict]:
    sqs, received = boto3.client("sqs"), []
    while messages := sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages"):
        for message in messages:
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return received


@pytest.mark.mysql
@pytest.mark.slow
def test_a_put_under_raw_triggers_the_rule_and_its_wrapper_run_ingests_that_object(
    tmp_path, s3_bucket, rule, rds
):
    s3 = boto3.client("s3")
    s3.put_object(
        Bucket=s3_bucket, Key="processed/insurance_data_2026-11-01_06-00-00.csv", Body=b"x"
    )
    s3.put_object(Bucket=s3_bucket, Key="rawish/insurance_data_2026-11-01_06-00-00.csv", Body=b"x")
    assert delivered(rule) == []  # not under raw/

    # an object that is already there (never announced) and the one that arrives now
    s3.put_object(
        Bucket=s3_bucket,
        Key="raw/insurance_data_2026-11-01_06-00-00.csv",
        Body=(HEADER + good_rows(1, 3)).encode(),
    )
    delivered(rule)
    s3.put_object(
        Bucket=s3_bucket,
        Key="raw/insurance_data_2026-11-02_06-00-00.csv",
        Body=(HEADER + good_rows(1, 7)).encode(),
    )
    (event,) = delivered(rule)
    bucket, key = object_from_event(event)
    assert (bucket, key) == (s3_bucket, "raw/insurance_data_2026-11-02_06-00-00.csv")

    secret = rds["secret_arn"]
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "glue_wrappers/ingest_raw.py"),
            "--JOB_NAME",
            "ingest-raw",
            "--JOB_RUN_ID",
            "jr_1",
            "--TempDir",
            f"s3://{bucket}/tmp/",
            "--enable-metrics",
            "true",
            "--bucket",
            bucket,
            "--db-secret-id",
            secret,
            "--db-ca-bundle",
            rds["ca_bundle"],
            "--object-key",
            key,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    engine = sa.create_engine(rds["url"])
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT source_file, rows_loaded FROM ingestion_log").all() == [
            (key, 7)
        ]
    engine.dispose()
