"""churn_kedro.glue_job's command line and exit status, as Glue gives and reads them."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from churn_kedro import glue_job

REPO = Path(__file__).resolve().parents[1]


def test_an_argument_of_glue_s_own_is_not_taken_for_a_prefix_of_ours():
    # Glue passes --conf (Spark settings) among its arguments: no prefix match for --conf-source
    parsed = glue_job.parse_arguments(
        ["--JOB_NAME", "j", "--conf", "spark.executor.memory=4g", "--bucket", "b"]
    )
    assert parsed["conf_source"] is None and parsed["bucket"] == "b"
    for prefix in ("--db", "--object", "--conf-s"):
        assert glue_job.parse_arguments([prefix, "x", "--bucket", "b"]) == glue_job.parse_arguments(
            ["--bucket", "b"]
        ), prefix


PIPELINE_WRAPPERS = [
    path
    for path in sorted((REPO / "glue_wrappers").glob("*.py"))
    if path.stem != "bootstrap_database"
]


@pytest.mark.parametrize("wrapper", PIPELINE_WRAPPERS, ids=lambda p: p.stem)
def test_a_wrapper_ends_normally_on_success_and_exits_1_on_failure(wrapper, monkeypatch):
    """Success raises no SystemExit at all (Glue's Spark driver then reports SUCCEEDED
    whatever it makes of SystemExit(0)); failure exits 1 (FAILED)."""
    calls = []

    def fake(code):
        def run_pipeline(pipeline, argv, script):
            calls.append((pipeline, Path(script).name))
            return code

        return run_pipeline

    monkeypatch.setattr(glue_job, "run_pipeline", fake(0))
    runpy.run_path(str(wrapper), run_name="__main__")
    monkeypatch.setattr(glue_job, "run_pipeline", fake(1))
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(wrapper), run_name="__main__")
    assert exit_.value.code == 1
    assert calls == [(wrapper.stem, wrapper.name)] * 2


def test_the_ca_bundle_argument_is_downloaded_for_the_engine_factory(s3_bucket, tmp_path):
    import boto3

    boto3.client("s3").put_object(Bucket=s3_bucket, Key="glue/rds.pem", Body=b"PEM")
    local = glue_job.local_copy(f"s3://{s3_bucket}/glue/rds.pem")
    assert Path(local).read_bytes() == b"PEM" and Path(local).name == "rds.pem"
    assert glue_job.local_copy(str(tmp_path)) == str(tmp_path)
