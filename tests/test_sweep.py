"""The scheduled sweep of infra/template.yaml (IngestSweepTrigger) on moto + a MariaDB that
plays RDS: an object whose event never reached its workflow is ingested by the sweep's
runs, once, however often the sweep runs."""

from __future__ import annotations

import boto3
import pytest
import sqlalchemy as sa
from test_infra import engine_choice
from test_ingest import HEADER, good_rows
from test_rehearsal import Stack, resolve
from test_rehearsal import template as template  # the module's fixture  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.mysql]

RAW = "raw/insurance_data_2026-12-01_06-00-00.csv"
PROCESSED = "processed/insurance_data_2026-12-01_06-00-00.csv"


def test_an_object_whose_event_was_lost_is_ingested_by_the_sweep_once(
    template, s3_endpoint, rds, tmp_path
):
    stack = Stack(template, s3_endpoint, rds, tmp_path / "glue")
    stack.workdir.mkdir()
    stack.upload_artifacts(tmp_path)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.put_object(Bucket=stack.bucket, Key=RAW, Body=(HEADER + good_rows(1, 6)).encode())
    body = "".join(line + ",train\n" for line in good_rows(1, 4).splitlines())
    s3.put_object(
        Bucket=stack.bucket, Key=PROCESSED, Body=(HEADER.strip() + ",split\n" + body).encode()
    )
    # the rules matched, but the events never reach a workflow: no job runs for them
    assert [e["detail"]["object"]["key"] for e in stack.events_for("IngestRawWorkflow")] == [RAW]
    assert stack.events_for("IngestProcessedWorkflow")
    (sweep,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Glue::Trigger"
        and r["Properties"].get("Schedule") == {"Ref": "IngestSweepSchedule"}
    ]

    for _ in range(2):  # two scheduled runs
        for action in sweep["Actions"]:
            arguments = resolve(action.get("Arguments", {}), template, stack.parameters)
            job = engine_choice(action["JobName"], "pandas")  # the stack's default engine
            stack.run_job(job, *[x for kv in arguments.items() for x in kv])

    engine = sa.create_engine(rds["url"])
    with engine.connect() as conn:
        log = conn.exec_driver_sql(
            "SELECT source_file, rows_loaded FROM ingestion_log ORDER BY source_file"
        ).all()
        raw = conn.exec_driver_sql("SELECT COUNT(*) FROM policies_raw").scalar()
        processed = conn.exec_driver_sql("SELECT COUNT(*) FROM policies_processed").scalar()
    engine.dispose()
    assert log == [(PROCESSED, 4), (RAW, 6)]
    assert (raw, processed) == (6, 4)
