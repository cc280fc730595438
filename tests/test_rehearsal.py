"""The seed's workflow, end to end, on this machine, wired as infra/template.yaml wires it.

moto server plays S3, Secrets Manager, EventBridge (and SQS, standing in for the Glue
workflow target); a MariaDB that requires TLS plays RDS (tests/tls_mariadb.py). The rules' event patterns, the Glue jobs'
arguments and the Lambda's environment are read from the template, so what runs here is
what the stack runs:

  raw snapshot -> S3 "Object Created" -> the raw rule -> glue_wrappers/ingest_raw.py -> MariaDB
  glue_wrappers/retrain.py (kedro run --pipeline retrain --env aws) -> processed/ object
      -> the processed rule -> glue_wrappers/ingest_processed.py -> MariaDB; champion in s3 registry/
  the Lambda handler (docker/Dockerfile CMD) answers a REST v1 event with the champion's version
  a drifted snapshot -> retrain -> the decision in the benchmarks -> the handler follows champion.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from kedro_project import FAST_RETRAIN, REPO, env
from test_infra import TEMPLATE, dockerfile_cmd, resolve

from churn_kedro.registry import ModelRegistry

pytestmark = [pytest.mark.slow, pytest.mark.mysql]

BIN = Path(sys.executable).parent
REGION = "us-east-1"
STACK = "churn"
FIRST = "insurance_data_2026-12-01_06-00-00.csv"
SECOND = "insurance_data_2026-12-08_06-00-00.csv"
ROWS = "3000"


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import decode

    decoded, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return json.loads(json.dumps(decoded))


class Stack:
    """The stack's resources, stood up on moto + MariaDB as the template declares them."""

    def __init__(self, template: dict, endpoint: str, rds: dict, workdir: Path):
        self.template, self.endpoint, self.workdir = template, endpoint, workdir
        self.bucket = f"churn-rehearsal-{uuid.uuid4().hex[:8]}"
        self.parameters = {"BucketName": self.bucket, "ImageTag": "v1"}
        self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
        self.events = boto3.client("events", endpoint_url=endpoint, region_name=REGION)
        secrets = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION)

        # DataBucket: EventBridge notifications on, as the template sets them
        bucket = template["Resources"]["DataBucket"]["Properties"]
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_bucket_versioning(
            Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"]
        self.s3.put_bucket_notification_configuration(
            Bucket=self.bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )

        # DatabaseSecret after its target attachment: the keys RDS + SecretTargetAttachment write
        # (the rds fixture: a MariaDB that requires TLS, its certificate signed by a test CA)
        self.rds = rds
        self.secret_arn = secrets.create_secret(
            Name=f"{STACK}/mysql-app-{uuid.uuid4().hex[:6]}", SecretString=json.dumps(rds["secret"])
        )["ARN"]

        # The two rules, their patterns from the template; an SQS queue per rule records
        # what the Glue workflow target would receive.
        self.queues = {}
        for name, rule in template["Resources"].items():
            if rule["Type"] != "AWS::Events::Rule":
                continue
            pattern = resolve(rule["Properties"]["EventPattern"], template, self.parameters)
            queue_url = self.sqs.create_queue(QueueName=f"{name}-{uuid.uuid4().hex[:6]}")[
                "QueueUrl"
            ]
            queue_arn = self.sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            self.events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
            self.events.put_targets(Rule=name, Targets=[{"Id": "workflow", "Arn": queue_arn}])
            workflow = (
                rule["Properties"]["Targets"][0]["Arn"]["Fn::Sub"].rsplit("${", 1)[1].rstrip("}")
            )
            self.queues[workflow] = queue_url

    def upload_artifacts(self, workdir: Path) -> None:
        """What infra/deploy.sh artifacts puts under glue/: here the configuration archive
        as `kedro package` builds it (conf/ without local/*.yml), at the job's --conf-source.
        The wheel is the installed package and the scripts run from the checkout."""
        archive = workdir / "conf-churn_kedro.tar.gz"
        subprocess.run(
            ["tar", "--exclude=local/*.yml", "-czf", str(archive), f"--directory={REPO}", "conf"],
            check=True,
        )
        location = resolve(
            self.template["Resources"]["IngestRawJob"]["Properties"]["DefaultArguments"],
            self.template,
            self.parameters,
        )["--conf-source"]
        bucket, key = location.removeprefix("s3://").split("/", 1)
        assert bucket == self.bucket
        self.s3.upload_file(str(archive), bucket, key)
        # the CA bundle at the ingestion jobs' --db-ca-bundle (deploy.sh: the RDS bundle)
        location = resolve(
            self.template["Resources"]["IngestRawJob"]["Properties"]["DefaultArguments"],
            self.template,
            self.parameters,
        )["--db-ca-bundle"]
        bucket, key = location.removeprefix("s3://").split("/", 1)
        assert bucket == self.bucket
        self.s3.upload_file(self.rds["ca_bundle"], bucket, key)

    def job_arguments(self, job: str) -> list[str]:
        """The command line Glue gives the job's script: its own arguments, then the
        job's DefaultArguments from the template (with this stack's values)."""
        props = self.template["Resources"][job]["Properties"]
        defaults = resolve(props["DefaultArguments"], self.template, self.parameters)
        defaults["--db-secret-id"] = self.secret_arn if "--db-secret-id" in defaults else None
        args = [
            "--JOB_NAME",
            f"{STACK}-{job}",
            "--JOB_ID",
            "j_rehearsal",
            "--JOB_RUN_ID",
            f"jr_{uuid.uuid4().hex}",
        ]
        for key, value in defaults.items():
            if value is not None:
                args += [key, str(value)]
        return args

    def script(self, job: str) -> Path:
        location = resolve(
            self.template["Resources"][job]["Properties"]["Command"]["ScriptLocation"],
            self.template,
            self.parameters,
        )
        return REPO / "glue_wrappers" / location.rsplit("/", 1)[1]

    def run_job(self, job: str, *extra: str) -> subprocess.CompletedProcess:
        """Run a Glue job's script as Glue would (a fresh process, the job arguments),
        from an empty working directory: nothing of the checkout but the installed package."""
        command = [sys.executable, str(self.script(job)), *self.job_arguments(job), *extra]
        result = subprocess.run(
            command, cwd=self.workdir, env=env(), capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, (
            f"{job} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
        return result

    def events_for(self, workflow: str) -> list[dict]:
        """The events the rule delivered to the workflow (drains its stand-in queue)."""
        received = []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queues[workflow], MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not messages:
                return received
            for message in messages:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queues[workflow], ReceiptHandle=message["ReceiptHandle"]
                )

    def get_json(self, key: str) -> dict:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def keys(self, prefix: str) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def lambda_environment(self) -> dict[str, str]:
        variables = self.template["Resources"]["ServingFunction"]["Properties"]["Environment"][
            "Variables"
        ]
        return {k: str(v) for k, v in resolve(variables, self.template, self.parameters).items()}


class LambdaContainer:
    """One warm Lambda container: a process that imports the image's CMD handler once and
    answers the events it is sent, one JSON line in, one JSON line out."""

    DRIVER = """
import importlib, json, sys
module, _, name = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module), name)
for line in sys.stdin:
    print(json.dumps(handler(json.loads(line), None)), flush=True)
"""

    def __init__(self, environment: dict[str, str]):
        (handler,) = dockerfile_cmd()
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.DRIVER, handler],
            env=env(**environment),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def invoke(self, event: dict) -> dict:
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"the handler process died: {self.process.stderr.read()[-3000:]}"
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


def rest_v1_event(method: str, path: str, body: dict | None = None) -> dict:
    """An API Gateway REST (v1) proxy event as ANY /{proxy+} on stage v1 delivers it."""
    headers = {
        "Content-Type": "application/json",
        "x-api-key": "rehearsal-key",
        "Host": "api.example",
    }
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/v1{path}",
            "stage": "v1",
            "accountId": "123456789012",
            "apiId": "rehearsal",
            "requestId": uuid.uuid4().hex,
            "identity": {"sourceIp": "127.0.0.1", "apiKey": "rehearsal-key"},
            "requestTimeEpoch": int(time.time() * 1000),
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def generate(workdir: Path, timestamp: str, *args: str) -> Path:
    out = workdir / "staging"
    subprocess.run(
        [
            str(BIN / "churn-generate"),
            "--rows",
            ROWS,
            "--timestamp",
            timestamp,
            "--out",
            str(out),
            "--truth-dir",
            str(workdir / "truth"),
            *args,
        ],
        check=True,
        capture_output=True,
        env=env(),
    )
    return out / f"insurance_data_{timestamp}.csv"


def count(engine: sa.Engine, table: str, source_file: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(f"SELECT COUNT(*) FROM {table} WHERE source_file = :f"), {"f": source_file}
        ).scalar_one()


def test_the_seed_workflow_end_to_end(template, s3_endpoint, rds, tmp_path):
    stack = Stack(template, s3_endpoint, rds, tmp_path / "glue")
    stack.workdir.mkdir()
    stack.upload_artifacts(tmp_path)
    assert stack.events_for("IngestRawWorkflow") == []  # glue/ is no snapshot prefix
    engine = sa.create_engine(rds["url"])

    # 1. a raw snapshot lands -> the raw rule matches -> ingest_raw -> rows in MariaDB
    first = generate(
        tmp_path, FIRST.removeprefix("insurance_data_").removesuffix(".csv"), "--seed", "11"
    )
    stack.s3.upload_file(str(first), stack.bucket, f"raw/{FIRST}")
    stack.s3.put_object(Bucket=stack.bucket, Key="elsewhere/readme.txt", Body=b"not a snapshot")
    (event,) = stack.events_for("IngestRawWorkflow")
    assert event["detail"]["object"]["key"] == f"raw/{FIRST}"
    assert stack.events_for("IngestProcessedWorkflow") == []
    stack.run_job("IngestRawJob")
    raw_rows = count(engine, "policies_raw", f"raw/{FIRST}")
    rejected = count(engine, "quarantine", f"raw/{FIRST}")
    assert (
        raw_rows > 0 and raw_rows + rejected >= int(ROWS) - 50
    )  # duplicates collapse to one reason
    # the same event delivered again loads nothing twice
    stack.run_job("IngestRawJob")
    assert count(engine, "policies_raw", f"raw/{FIRST}") == raw_rows

    # 2. retrain --env aws -> the processed snapshot -> the processed rule -> ingest_processed
    stack.run_job("RetrainJob", "--params", FAST_RETRAIN)
    (event,) = stack.events_for("IngestProcessedWorkflow")
    processed_key = event["detail"]["object"]["key"]
    assert processed_key == f"processed/{FIRST}"
    stack.run_job("IngestProcessedJob")
    assert count(engine, "policies_processed", processed_key) > 0.9 * raw_rows

    # 3. the champion is in the S3 registry, and the Lambda serves it
    champion = stack.get_json("registry/champion.json")
    first_version = champion["version"]
    assert {
        f"registry/versions/{first_version}/model.joblib",
        f"registry/versions/{first_version}/card.json",
    } <= stack.keys("registry/")
    environment = stack.lambda_environment()
    assert environment["CHURN_REGISTRY"] == f"s3://{stack.bucket}/registry"
    # The one value changed from the template's: re-read champion.json every second, not
    # every minute, so that the swap below is seen without a long sleep.
    refresh_seconds = 1
    environment["CHURN_CHAMPION_REFRESH_SECONDS"] = str(refresh_seconds)
    container = LambdaContainer(environment)
    try:
        health = container.invoke(rest_v1_event("GET", "/health"))
        assert health["statusCode"] == 200, health
        assert json.loads(health["body"])["model_version"] == first_version
        instance = {
            "customer_id": "c-1",
            "age": 36,
            "annual_premium": 2386.0,
            "policy_type": "auto",
            "claims_count": 1,
        }
        answer = container.invoke(rest_v1_event("POST", "/predict", {"instances": [instance]}))
        assert answer["statusCode"] == 200, answer
        prediction = json.loads(answer["body"])
        assert prediction["model_version"] == first_version
        assert 0.0 <= prediction["predictions"][0]["churn_probability"] <= 1.0

        # 4. a snapshot with shifted behaviour -> ingest -> retrain -> the decision is recorded
        second = generate(
            tmp_path,
            SECOND.removeprefix("insurance_data_").removesuffix(".csv"),
            "--seed",
            "12",
            "--drift",
            "1.0",
        )
        stack.s3.upload_file(str(second), stack.bucket, f"raw/{SECOND}")
        (event,) = stack.events_for("IngestRawWorkflow")
        assert event["detail"]["object"]["key"] == f"raw/{SECOND}"
        stack.run_job("IngestRawJob")
        assert count(engine, "policies_raw", f"raw/{SECOND}") > 0
        stack.run_job("RetrainJob", "--params", FAST_RETRAIN)
        assert [
            e["detail"]["object"]["key"] for e in stack.events_for("IngestProcessedWorkflow")
        ] == [f"processed/{SECOND}"]
        stack.run_job("IngestProcessedJob")
        assert count(engine, "policies_processed", f"processed/{SECOND}") > 0

        benchmarks = ModelRegistry(f"s3://{stack.bucket}/registry").benchmarks()
        runs = benchmarks[benchmarks["role"] == "challenger"]
        assert runs["snapshot"].tolist() == [f"raw/{FIRST}", f"raw/{SECOND}"]  # object keys
        assert runs["decision"].iloc[0] == "promoted"
        decision = runs["decision"].iloc[-1]
        assert decision in {"promoted", "rejected"}, decision
        # the gate compared the challenger with the serving champion on the drifted holdout
        (defender,) = benchmarks[benchmarks["role"] == "champion"].itertuples()
        assert defender.version == first_version
        assert defender.decision == ("retired" if decision == "promoted" else "kept")
        champion = stack.get_json("registry/champion.json")
        assert (champion["version"] != first_version) == (decision == "promoted")
        print(
            f"drifted snapshot: challenger {decision} ({runs['reason'].iloc[-1]}); "
            f"holdout ROC-AUC challenger {runs['holdout_roc_auc'].iloc[-1]:.4f}, "
            f"champion {defender.holdout_roc_auc:.4f}"
        )

        # 5. the handler follows champion.json: now, and after a promotion by the registry CLI
        time.sleep(refresh_seconds + 0.5)
        health = json.loads(container.invoke(rest_v1_event("GET", "/health"))["body"])
        assert health["model_version"] == champion["version"]
        other = first_version if decision == "promoted" else runs["version"].iloc[-1]
        subprocess.run(
            [
                str(BIN / "churn-registry"),
                "--registry",
                environment["CHURN_REGISTRY"],
                "promote",
                other,
            ],
            check=True,
            capture_output=True,
            env=env(),
        )
        time.sleep(refresh_seconds + 0.5)
        health = json.loads(container.invoke(rest_v1_event("GET", "/health"))["body"])
        assert (
            health["model_version"] == other == stack.get_json("registry/champion.json")["version"]
        )
    finally:
        container.close()
        engine.dispose()
