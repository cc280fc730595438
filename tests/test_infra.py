"""infra/template.yaml: cfn-lint clean, and its pieces point at real things in this repo
(Glue scripts, the Lambda handler, the ingestion event pattern, least-privilege IAM)."""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "infra" / "template.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
BUCKET = "churn-rehearsal-bucket"

# Actions that support no resource-level permissions: AWS accepts only "*" for them.
STAR_ONLY_ACTIONS = {
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeRouteTables",
    "ec2:DescribeVpcAttribute",
    "cloudwatch:PutMetricData",  # limited by its namespace condition instead
}


@pytest.fixture(scope="module")
def template() -> dict:
    decoded, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return json.loads(json.dumps(decoded))  # plain dicts and lists


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def resolve(value, template: dict, parameters: dict[str, str]):
    """Resolve the intrinsic functions the checks need (Ref, Sub, FindInMap, GetAtt of the
    bucket) with the given parameter values; anything else stays a {"Fn": ...} dict."""
    names = {
        "DataBucket": parameters["BucketName"],
        "AWS::Region": "eu-west-1",
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
        "AWS::StackName": "churn",
        "AWS::URLSuffix": "amazonaws.com",
        "DataBucket.Arn": f"arn:aws:s3:::{parameters['BucketName']}",
    }
    for name, spec in template["Parameters"].items():
        names.setdefault(name, parameters.get(name, spec.get("Default")))

    def sub(text: str, extra: dict) -> str:
        return re.sub(
            r"\$\{([^}!]+)\}", lambda m: str({**names, **extra}.get(m.group(1), m.group(0))), text
        )

    if isinstance(value, list):
        return [resolve(v, template, parameters) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and value["Ref"] in names:
        return names[value["Ref"]]
    if set(value) == {"Fn::FindInMap"}:
        mapping, key, field = value["Fn::FindInMap"]
        return template["Mappings"][mapping][key][field]
    if set(value) == {"Fn::Sub"}:
        spec = value["Fn::Sub"]
        if isinstance(spec, str):
            return sub(spec, {})
        text, variables = spec
        return sub(text, {k: resolve(v, template, parameters) for k, v in variables.items()})
    if set(value) == {"Fn::GetAtt"} and value["Fn::GetAtt"] == ["DataBucket", "Arn"]:
        return f"arn:aws:s3:::{parameters['BucketName']}"
    return {k: resolve(v, template, parameters) for k, v in value.items()}


def test_cfn_lint_reports_no_errors():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE)],
        capture_output=True,
        text=True,
    )
    # cfn-lint's exit code is a bit field: 2 = errors, 4 = warnings, 8 = informational.
    assert not result.returncode & 2, result.stdout + result.stderr


@pytest.mark.parametrize(
    "egress, authorization, image, engine",
    [
        ("NatGateway", "API_KEY", "v1", "pandas"),
        ("VpcEndpoints", "AWS_IAM", "v1", "spark"),
        ("VpcEndpoints", "API_KEY", "", "spark"),
        ("NatGateway", "AWS_IAM", "", "pandas"),
    ],
)
def test_cfn_lint_reports_no_errors_for_each_option(egress, authorization, image, engine):
    """The stack each choice of the options builds (cfn-lint resolves the conditions with
    these parameter values): no NAT and IAM authorization included."""
    parameters = [
        "BucketName=churn-lint-bucket",
        f"NetworkEgress={egress}",
        f"ApiAuthorization={authorization}",
        f"ImageTag={image}",
        f"IngestionEngine={engine}",
    ]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE), "--parameters", *parameters],
        capture_output=True,
        text=True,
    )
    assert not result.returncode & 2, result.stdout + result.stderr


def test_template_is_parameterised_and_takes_no_password(template):
    parameters = template["Parameters"]
    assert {
        "BucketName",
        "DBInstanceClass",
        "DBAllocatedStorage",
        "RetrainSchedule",
        "ImageTag",
    } <= set(parameters)
    assert not [
        name for name in parameters if "password" in name.lower() or parameters[name].get("NoEcho")
    ]
    (database,) = resources(template, "AWS::RDS::DBInstance").values()
    props = database["Properties"]
    assert (
        props["Engine"] == "mysql"
        and props["PubliclyAccessible"] is False
        and props["StorageEncrypted"]
    )
    assert props["DBInstanceClass"] == {"Ref": "DBInstanceClass"}
    assert props["AllocatedStorage"] == {"Ref": "DBAllocatedStorage"}
    # the password is generated into the secret and resolved from there
    assert (
        "{{resolve:secretsmanager:${DatabaseSecret}:SecretString:password}}"
        in props["MasterUserPassword"]["Fn::Sub"]
    )
    secret = template["Resources"]["DatabaseSecret"]["Properties"]
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "password"
    # both secrets (master, application user) get the endpoint from their attachment
    attachments = resources(template, "AWS::SecretsManager::SecretTargetAttachment").values()
    assert {a["Properties"]["SecretId"]["Ref"] for a in attachments} == {
        "DatabaseSecret",
        "AppDatabaseSecret",
    }
    assert all(a["Properties"]["TargetId"] == {"Ref": "Database"} for a in attachments)
    app = template["Resources"]["AppDatabaseSecret"]["Properties"]["GenerateSecretString"]
    assert app["GenerateStringKey"] == "password" and "churn_app" in app["SecretStringTemplate"]
    # private subnets only: the subnet group holds no subnet with a route to the internet gateway
    (group,) = resources(template, "AWS::RDS::DBSubnetGroup").values()
    public_subnets = {
        a["Properties"]["SubnetId"]["Ref"]
        for a in resources(template, "AWS::EC2::SubnetRouteTableAssociation").values()
        if a["Properties"]["RouteTableId"] == {"Ref": "PublicRouteTable"}
    }
    assert not {s["Ref"] for s in group["Properties"]["SubnetIds"]} & public_subnets


def test_bucket_is_versioned_encrypted_private_and_sends_events(template):
    (bucket,) = resources(template, "AWS::S3::Bucket").values()
    props = bucket["Properties"]
    assert props["BucketName"] == {"Ref": "BucketName"}
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(
        props["PublicAccessBlockConfiguration"][k] is True
        for k in (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        )
    )
    assert (
        props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    )


def engine_choice(value, engine: str):
    """A trigger's job reference as the stack with IngestionEngine=``engine`` builds it."""
    if isinstance(value, dict) and "Fn::If" in value:
        condition, spark, pandas = value["Fn::If"]
        assert condition == "SparkIngestion", value
        value = spark if engine == "spark" else pandas
    return value["Ref"]


SPARK_JOBS = {"IngestRawSparkJob", "IngestProcessedSparkJob", "ScoreSparkJob"}


def glue_jobs(template: dict) -> dict[str, dict]:
    return {
        name: resolve(job["Properties"], template, {"BucketName": BUCKET})
        for name, job in resources(template, "AWS::Glue::Job").items()
    }


def test_every_glue_job_runs_a_wrapper_of_this_repo_on_glue_5_with_the_wheel(template):
    jobs = glue_jobs(template)
    assert len(jobs) == 8  # 5 pandas jobs; the Spark ingestion pair and scoring
    prefix = template["Mappings"]["Project"]["Names"]["ArtifactsPrefix"]
    missing = []
    for name, job in jobs.items():
        assert job["GlueVersion"] == "5.0" and job["Command"]["Name"] == "glueetl", name
        location = job["Command"]["ScriptLocation"]
        match = re.fullmatch(rf"s3://{BUCKET}/{prefix}/scripts/(\w+\.py)", location)
        assert match, f"{name}: script {location} is not under s3://<bucket>/{prefix}/scripts/"
        if not (REPO / "glue_wrappers" / match.group(1)).is_file():
            missing.append(f"glue_wrappers/{match.group(1)} ({name})")
        modules = job["DefaultArguments"]["--additional-python-modules"]
        kind = "gluesparkwheels" if name in SPARK_JOBS else "gluewheels"
        assert re.fullmatch(rf"s3://{BUCKET}/{prefix}/churn_kedro-[^/]+\.{kind}\.zip", modules)
        # only ingestion, scoring, monitoring (and the user bootstrap) talk to the database:
        # only they run in the VPC and read a database secret
        reads_database = name.startswith(("Ingest", "Score", "Monitor", "Bootstrap"))
        assert ("Connections" in job) == reads_database, name
        assert ("--db-secret-id" in job["DefaultArguments"]) == reads_database, name
    if missing:
        pytest.skip(f"Glue scripts not in the repo yet: {', '.join(missing)}")


# Arguments Glue itself reads (https://docs.aws.amazon.com/glue/latest/dg/aws-glue-programming-etl-glue-arguments.html)
GLUE_OWN_ARGUMENTS = {
    "--job-language",
    "--additional-python-modules",
    "--TempDir",
    "--custom-logGroup-prefix",
    "--python-modules-installer-option",
    "--extra-jars",
}


def test_glue_job_arguments_are_the_ones_the_wrappers_read(template):
    glue_job = importlib.import_module("churn_kedro.glue_job")
    for name, job in glue_jobs(template).items():
        ours = {k: v for k, v in job["DefaultArguments"].items() if k not in GLUE_OWN_ARGUMENTS}
        for key in ("--db-secret-id", "--master-secret-id"):
            if key in ours:
                ours[key] = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:churn/{key}"
        # Glue's command line: its own arguments, then every default argument
        argv = ["--JOB_ID", "j_1", "--JOB_RUN_ID", "jr_1", "--JOB_NAME", name]
        for key, value in job["DefaultArguments"].items():
            value = ours.get(key, value)
            argv += [key, value["Ref"] if isinstance(value, dict) else value]  # e.g. the log group
        parsed = glue_job.parse_arguments(argv)
        expected = {key.lstrip("-").replace("-", "_"): value for key, value in ours.items()}
        unread = {k: v for k, v in expected.items() if parsed.get(k) != v}
        assert not unread, f"{name}: churn_kedro.glue_job does not read {unread}"
        assert parsed["bucket"] == BUCKET
        if name != "BootstrapDatabaseJob":  # the pipelines' jobs
            assert parsed["env"] == ("aws_spark" if name in SPARK_JOBS else "aws"), name
            assert parsed["conf_source"].endswith("/conf-churn_kedro.tar.gz")


def test_triggers_start_the_right_jobs(template):
    triggers = {
        name: t["Properties"] for name, t in resources(template, "AWS::Glue::Trigger").items()
    }
    kinds = {
        (
            t["Type"],
            tuple(engine_choice(a["JobName"], "pandas") for a in t["Actions"]),
            t.get("WorkflowName", {}).get("Ref"),
        )
        for t in triggers.values()
    }
    assert kinds == {
        ("EVENT", ("IngestRawJob",), "IngestRawWorkflow"),
        ("EVENT", ("IngestProcessedJob",), "IngestProcessedWorkflow"),
        ("SCHEDULED", ("RetrainJob",), None),
        ("SCHEDULED", ("IngestRawJob", "IngestProcessedJob"), None),  # the sweep
        ("CONDITIONAL", ("MonitorJob",), "IngestRawWorkflow"),
        ("EVENT", ("RetrainJob",), "RetrainWorkflow"),
    }
    schedules = {t["Schedule"]["Ref"]: t for t in triggers.values() if t["Type"] == "SCHEDULED"}
    assert set(schedules) == {"RetrainSchedule", "IngestSweepSchedule"}
    assert all(t["StartOnCreation"] is True for t in schedules.values())


def rule_targets(template: dict) -> dict[str, tuple[dict, str]]:
    """prefix -> (resolved event pattern, target workflow logical id)"""
    out = {}
    for rule in resources(template, "AWS::Events::Rule").values():
        props = rule["Properties"]
        if props["EventPattern"]["source"] != ["aws.s3"]:
            continue  # the monitoring verdict rule: test_a_retrain_verdict_...
        pattern = resolve(props["EventPattern"], template, {"BucketName": BUCKET})
        (prefix,) = [k["prefix"] for k in pattern["detail"]["object"]["key"]]
        (target,) = props["Targets"]
        workflow = re.search(r"workflow/\$\{(\w+)\}", target["Arn"]["Fn::Sub"]).group(1)
        out[prefix] = (pattern, workflow)
    return out


def test_event_rules_start_the_ingestion_workflows(template):
    targets = rule_targets(template)
    assert {p: w for p, (_, w) in targets.items()} == {
        "raw/": "IngestRawWorkflow",
        "processed/": "IngestProcessedWorkflow",
    }


def test_event_patterns_are_the_ones_the_ingestion_code_builds(template):
    events = importlib.import_module("churn_kedro.events")
    # each workflow's rule carries exactly the pattern the ingestion code builds for its prefix
    prefixes = {
        "IngestRawWorkflow": events.RAW_PREFIX,
        "IngestProcessedWorkflow": events.PROCESSED_PREFIX,
    }
    patterns = {workflow: pattern for pattern, workflow in rule_targets(template).values()}
    assert set(patterns) == set(prefixes)
    for workflow, prefix in prefixes.items():
        assert patterns[workflow] == events.object_created_pattern(BUCKET, prefix), workflow


def test_lambda_is_the_image_with_memory_timeout_and_registry(template):
    function = resolve(
        template["Resources"]["ServingFunction"]["Properties"],
        template,
        {"BucketName": BUCKET, "ImageTag": "v1"},
    )
    assert function["PackageType"] == "Image"
    assert function["MemorySize"] >= 512 and 10 <= function["Timeout"] <= 30
    assert function["Environment"]["Variables"]["CHURN_REGISTRY"] == f"s3://{BUCKET}/registry"
    method = template["Resources"]["ServingProxyMethod"]["Properties"]
    assert method["Integration"]["Type"] == "AWS_PROXY"
    # every request is either keyed or signed, whichever ApiAuthorization chooses
    assert method["AuthorizationType"] == {"Fn::If": ["IamAuthorization", "AWS_IAM", "NONE"]}
    assert method["ApiKeyRequired"] == {"Fn::If": ["IamAuthorization", False, True]}


def dockerfile_cmd() -> list[str]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(DOCKERFILE))
    cmd = [i for i in parser.structure if i["instruction"] == "CMD"]
    assert cmd, f"{DOCKERFILE}: no CMD"
    value = cmd[-1]["value"]
    return json.loads(value) if value.startswith("[") else value.split()


def test_lambda_image_cmd_is_the_real_handler():
    (handler,) = dockerfile_cmd()
    module, _, function = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), function)), handler


def test_lambda_environment_names_are_the_ones_the_serving_code_reads(template):
    serving = REPO / "src" / "churn_kedro" / "serving"
    code = "\n".join(p.read_text() for p in serving.rglob("*.py"))
    variables = template["Resources"]["ServingFunction"]["Properties"]["Environment"]["Variables"]
    unread = [name for name in variables if f'"{name}"' not in code and f"'{name}'" not in code]
    assert not unread, (
        f"the Lambda environment sets {unread}, which src/churn_kedro/serving/ never reads"
    )


def iam_statements(template: dict):
    for name, role in resources(template, "AWS::IAM::Role").items():
        props = role["Properties"]
        for arn in props.get("ManagedPolicyArns", []):
            yield name, {"ManagedPolicyArn": arn}
        for policy in props.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, statement


def names_a_resource(resource, template: dict) -> bool:
    """An ARN, or a reference to one resource of this template (a secret's Ref is its ARN)."""
    if isinstance(resource, dict):
        if "Fn::GetAtt" in resource:
            name, attribute = resource["Fn::GetAtt"]
            return attribute == "Arn" and name in template["Resources"]
        return resource.get("Ref") in template["Resources"]
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}", resource)
    return resource.startswith("arn:") or bool(match and match.group(1) in template["Resources"])


def test_every_iam_statement_names_its_resources(template):
    problems = []
    for role, statement in iam_statements(template):
        if "ManagedPolicyArn" in statement:
            problems.append(f"{role}: managed policy {statement['ManagedPolicyArn']}")
            continue
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if any(a == "*" or a.endswith(":*") for a in actions):
            problems.append(f"{role}: wildcard action in {actions}")
        if "Resource" not in statement:
            problems.append(f"{role} {statement.get('Sid')}: no Resource")
            continue
        listed = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        if "*" in listed and not set(actions) <= STAR_ONLY_ACTIONS:
            problems.append(f"{role} {statement.get('Sid')}: Resource * for {actions}")
        for resource in resolve(listed, template, {"BucketName": BUCKET}):
            if resource != "*" and not names_a_resource(resource, template):
                problems.append(f"{role} {statement.get('Sid')}: resource {resource} is not an ARN")
            if re.fullmatch(r"arn:aws:s3:::[^/]+/\*", str(resource)):
                problems.append(
                    f"{role} {statement.get('Sid')}: every object of the bucket: {resource}"
                )
    assert not problems, "\n".join(problems)


def test_s3_access_is_scoped_to_the_prefixes_each_role_needs(template):
    granted = {}
    for role, statement in iam_statements(template):
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        resolved = resolve(statement.get("Resource", []), template, {"BucketName": BUCKET})
        for resource in resolved if isinstance(resolved, list) else [resolved]:
            match = re.fullmatch(rf"arn:aws:s3:::{BUCKET}/([\w/]+?)/?\*", str(resource))
            for action in actions:
                if match and action == "s3:PutObject":
                    granted.setdefault(role, set()).add(match.group(1))
    # ingestion writes no data to S3: only Glue's temp dir and its run reports
    assert granted["GlueIngestRole"] == {"glue/tmp", "reporting/ingestion_"}
    assert granted["GlueRetrainRole"] == {
        "processed",
        "intermediate",
        "model_input",
        "registry",
        "reporting",
        "glue/tmp",
    }
    assert granted["GlueBootstrapRole"] == {"glue/tmp"}
    # monitoring writes only its verdict in the registry and its own reports
    assert granted["GlueMonitorRole"] == {
        "registry/monitoring",
        "reporting/monitoring_",
        "glue/tmp",
    }
    # Spark scoring writes its scores to the database and only its report to S3
    assert granted["GlueScoreRole"] == {"reporting/score_", "glue/tmp"}
    assert "ServingRole" not in granted  # serving only reads the registry


def test_logs_are_retained_and_outputs_exist(template):
    for name, group in resources(template, "AWS::Logs::LogGroup").items():
        assert "RetentionInDays" in group["Properties"], name
    assert {"ApiUrl", "BucketName", "DatabaseSecretArn"} <= set(template["Outputs"])


def test_default_wheel_is_the_one_this_checkout_builds(template):
    import churn_kedro

    # infra/deploy.sh uploads churn_kedro-<__version__>.gluewheels.zip and passes its name
    assert (
        template["Parameters"]["GlueModules"]["Default"]
        == f"churn_kedro-{churn_kedro.__version__}.gluewheels.zip"
    )
    deploy = (REPO / "infra" / "deploy.sh").read_text()
    assert "MODULES=churn_kedro-${VERSION}.gluewheels.zip" in deploy
    assert '"GlueModules=$MODULES"' in deploy
    prefix = template["Mappings"]["Project"]["Names"]["ArtifactsPrefix"]
    assert f"PREFIX={prefix} " in deploy and "/$PREFIX/scripts/$(basename" in deploy


AWSGLUE_STAND_IN = '''
"""Stand-in for Glue's awsglue.utils: the argument convention of awslabs/aws-glue-libs
getResolvedOptions, which parses args[1:] (it is given sys.argv, script first)."""
import argparse


def getResolvedOptions(args, options):
    parser = argparse.ArgumentParser()
    for option in options:
        parser.add_argument("--" + option, required=True)
    parsed, _ = parser.parse_known_args(args[1:])
    return vars(parsed)
'''


def test_wrappers_read_their_arguments_through_glues_own_parser(template, tmp_path):
    """On Glue, churn_kedro.glue_job hands the command line to getResolvedOptions; our
    argument must survive its convention whatever position Glue puts it in."""
    (tmp_path / "awsglue").mkdir()
    (tmp_path / "awsglue" / "__init__.py").write_text("")
    (tmp_path / "awsglue" / "utils.py").write_text(AWSGLUE_STAND_IN)
    script = (
        "import json, sys; from churn_kedro.glue_job import parse_arguments; "
        "print(json.dumps(parse_arguments(sys.argv[1:])))"
    )
    for argv in (
        ["--bucket", BUCKET, "--env", "aws", "--JOB_ID", "j_1"],
        ["--JOB_ID", "j_1", "--env", "aws", "--bucket", BUCKET],
    ):
        result = subprocess.run(
            [sys.executable, "-c", script, *argv],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        )
        assert result.returncode == 0, f"{argv}: {result.stderr[-2000:]}"
        assert json.loads(result.stdout)["bucket"] == BUCKET, argv


def role_grants(template: dict, role: str) -> list[tuple[set[str], list]]:
    """(actions, resolved resources) of each statement of ``role``."""
    out = []
    for name, statement in iam_statements(template):
        if name == role and "Action" in statement:
            actions = statement["Action"]
            actions = set(actions if isinstance(actions, list) else [actions])
            listed = statement["Resource"]
            listed = listed if isinstance(listed, list) else [listed]
            out.append((actions, resolve(listed, template, {"BucketName": BUCKET})))
    return out


def test_glue_jobs_log_the_glue_5_way_into_groups_of_the_stack(template):
    """Glue 5.0: --custom-logGroup-prefix P sends stdout/stderr to P/output and system logs
    to P/error (the 4.0 continuous-logging arguments are gone); the groups exist with a
    retention, and each job's role may create them, their streams and their events."""
    groups = {
        resolve(g["Properties"]["LogGroupName"], template, {"BucketName": BUCKET}): g
        for g in resources(template, "AWS::Logs::LogGroup").values()
    }
    for name, job in glue_jobs(template).items():
        arguments = job["DefaultArguments"]
        assert not {"--enable-continuous-cloudwatch-log", "--continuous-log-logGroup"} & set(
            arguments
        ), name
        prefix = arguments["--custom-logGroup-prefix"]
        for suffix in ("output", "error"):
            group = f"{prefix}/{suffix}"
            assert group in groups and "RetentionInDays" in groups[group]["Properties"], group
            arn = f"arn:aws:logs:eu-west-1:123456789012:log-group:{group}"
            role = template["Resources"][name]["Properties"]["Role"]["Fn::GetAtt"][0]
            for action in ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"):
                assert any(
                    action in actions
                    and any(fnmatch.fnmatchcase(f"{arn}:log-stream:x", r) for r in listed)
                    for actions, listed in role_grants(template, role)
                ), f"{role} may not {action} on {group}"


def test_event_rule_targets_retry_then_dead_letter(template):
    queues = resources(template, "AWS::SQS::Queue")
    (policy,) = resources(template, "AWS::SQS::QueuePolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    senders = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    targets = 0
    for name, rule in resources(template, "AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            targets += 1
            retry = target["RetryPolicy"]
            assert retry["MaximumRetryAttempts"] > 0 and retry["MaximumEventAgeInSeconds"] >= 3600
            queue = target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
            assert queue in queues
            assert {"Fn::GetAtt": [name, "Arn"]} in senders, f"{name} may not send to {queue}"
    assert targets == 4  # two ingestion workflows; the retrain workflow and the verdicts topic
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"


def test_the_sweep_runs_both_ingestion_jobs_for_every_object(template):
    (sweep,) = [
        t["Properties"]
        for t in resources(template, "AWS::Glue::Trigger").values()
        if t["Properties"].get("Schedule") == {"Ref": "IngestSweepSchedule"}
    ]
    for engine, jobs in (
        ("pandas", ["IngestRawJob", "IngestProcessedJob"]),
        ("spark", ["IngestRawSparkJob", "IngestProcessedSparkJob"]),
    ):
        assert [engine_choice(a["JobName"], engine) for a in sweep["Actions"]] == jobs
    # no object named: the jobs load whatever ingestion_log does not hold
    assert not any("--object-key" in a.get("Arguments", {}) for a in sweep["Actions"])
    assert template["Parameters"]["IngestSweepSchedule"]["Default"].startswith("cron(")
    for job in (
        "IngestRawJob",
        "IngestProcessedJob",
        "IngestRawSparkJob",
        "IngestProcessedSparkJob",
    ):
        assert template["Resources"][job]["Properties"]["JobRunQueuingEnabled"] is True


def test_without_a_nat_gateway_the_jobs_reach_aws_through_interface_endpoints(template):
    """NetworkEgress=VpcEndpoints: nothing routes to the internet (the NAT gateway, its
    route and the whole public side are NatGateway-only) and Secrets Manager, CloudWatch
    Logs and Glue have interface endpoints in both private subnets, open to the jobs."""
    res = template["Resources"]
    public = [n for n, r in res.items() if r.get("Condition") == "UseNatGateway"]
    assert {"NatGateway", "NatAddress", "PrivateDefaultRoute", "InternetGateway"} <= set(public)
    routes = [n for n, r in res.items() if r["Type"] == "AWS::EC2::Route"]
    assert all(res[n].get("Condition") == "UseNatGateway" for n in routes)
    endpoints = {
        r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]: r
        for r in resources(template, "AWS::EC2::VPCEndpoint").values()
        if r["Properties"]["VpcEndpointType"] == "Interface"
    }
    assert set(endpoints) == {"secretsmanager", "logs", "glue", "monitoring", "events"}
    for endpoint in endpoints.values():
        props = endpoint["Properties"]
        assert endpoint["Condition"] == "UseVpcEndpoints" and props["PrivateDnsEnabled"] is True
        assert props["SubnetIds"] == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
    (ingress,) = res["EndpointSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert ingress["SourceSecurityGroupId"] == {"Ref": "GlueSecurityGroup"}
    assert ingress["FromPort"] == ingress["ToPort"] == 443


def test_stack_retries_cleanly_and_rds_is_pinned_to_its_major_version(template):
    res = template["Resources"]
    assert res["DataBucket"]["DeletionPolicy"] == "RetainExceptOnCreate"
    database = res["Database"]["Properties"]
    assert re.fullmatch(r"\d+\.\d+", database["EngineVersion"]), database["EngineVersion"]
    family = res["DatabaseParameterGroup"]["Properties"]
    assert family["Family"] == f"mysql{database['EngineVersion']}"
    assert family["Parameters"] == {"local_infile": "1", "require_secure_transport": "1"}


def test_the_api_offers_iam_authorization_access_logs_and_throttling(template):
    res = template["Resources"]
    assert template["Parameters"]["ApiAuthorization"]["AllowedValues"] == ["API_KEY", "AWS_IAM"]
    for name in ("ServingApiKey", "ServingUsagePlan", "ServingUsagePlanKey"):
        assert res[name]["Condition"] == "HasImageAndApiKeys", name
    stage = res["ServingStage"]["Properties"]
    access = stage["AccessLogSetting"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ServingAccessLogGroup", "Arn"]}
    fields = json.loads(access["Format"])
    assert {"requestId", "status", "apiKeyId", "user", "ip"} <= set(fields)
    assert "RetentionInDays" in res["ServingAccessLogGroup"]["Properties"]
    assert res["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]
    }
    plan = res["ServingUsagePlan"]["Properties"]
    assert plan["Throttle"]["RateLimit"] > 0 and plan["Throttle"]["BurstLimit"] > 0
    assert plan["Quota"]["Limit"] > 0
    (settings,) = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] > 0  # the stage throttles signed callers too


@pytest.mark.slow
def test_the_glue_zip_of_wheels_is_the_pinned_closure_and_resolves_offline_for_glue_5(tmp_path):
    """infra/wheelhouse.sh (what deploy.sh zips for the jobs): binary wheels only, each
    loadable on Glue 5.0 (CPython 3.11, glibc 2.34, x86_64), at the pins of constraints.txt,
    and the project wheel with its requirements installs from those files alone."""
    from packaging.utils import canonicalize_name, parse_wheel_filename

    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
    )
    (project_wheel,) = tmp_path.glob("churn_kedro-*.whl")
    house = tmp_path / "wheels"
    subprocess.run(
        [
            "bash",
            str(REPO / "infra" / "wheelhouse.sh"),
            str(house),
            str(project_wheel),
            str(tmp_path / "spark"),
        ],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    pins = {
        canonicalize_name(name): version
        for name, _, version in (
            line.partition("==")
            for line in (REPO / "constraints.txt").read_text().splitlines()
            if "==" in line
        )
    }
    files = sorted(p.name for p in house.iterdir())
    assert all(name.endswith(".whl") for name in files), files  # nothing to build on Glue
    wheels = {}
    for name in files:
        dist, version, _, tags = parse_wheel_filename(name)
        wheels[dist] = str(version)
        fits = [
            t.interpreter.startswith("py3")
            if t.platform == "any"
            else t.interpreter == "cp311"
            and t.abi in ("cp311", "abi3", "none")
            and (
                t.platform == "manylinux2014_x86_64"
                or (
                    (m := re.fullmatch(r"manylinux_2_(\d+)_x86_64", t.platform))
                    and int(m.group(1)) <= 34
                )
            )
            for t in tags
        ]
        assert any(fits), f"{name}: no tag for CPython 3.11 on glibc 2.34 x86_64"
        if dist != "churn-kedro":
            assert pins.get(dist) == str(version), f"{name}: not the pinned {pins.get(dist)}"
    assert {"numpy", "pandas", "pyarrow", "catboost", "pymysql", "cryptography"} <= set(wheels)
    # the Spark jobs' set: the same wheels without Glue's own pandas, numpy and pyarrow
    spark = sorted(p.name for p in (tmp_path / "spark").iterdir())
    assert spark == [
        name
        for name in files
        if parse_wheel_filename(name)[0] not in {"pandas", "numpy", "pyarrow", "pyspark", "py4j"}
    ]
    assert len(spark) == len(files) - 3

    report = tmp_path / "report.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--no-index",
            "--find-links",
            str(house),
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
            "--platform",
            "manylinux_2_34_x86_64",
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "--target",
            str(tmp_path / "target"),
            "--report",
            str(report),
            str(project_wheel),
        ],
        check=True,
    )
    installed = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert installed == wheels  # the zip holds the closure, no more and no less


CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"  # `make checkov` (make test builds it)


def test_checkov_finds_nothing_that_is_not_suppressed_with_a_reason():
    if not CHECKOV.is_file():
        message = f"no {CHECKOV.relative_to(REPO)}: run `make checkov`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(CHECKOV), "-f", str(TEMPLATE), "--framework", "cloudformation", "--skip-download"]
        + ["--output", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 50 and report["summary"]["parsing_errors"] == 0
    unexplained = [
        f"{c['check_id']} {c['resource']}"
        for c in report["results"]["skipped_checks"]
        if len((c.get("check_result", {}).get("suppress_comment") or "").split()) < 5
    ]
    assert not unexplained, f"suppressed without a reason: {unexplained}"


def test_the_deploy_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in (REPO / "infra").glob("*.sh"))
    assert len(scripts) >= 2  # deploy.sh, wheelhouse.sh
    result = subprocess.run(
        [str(Path(sys.executable).parent / "shellcheck"), "--severity=style", *scripts],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def monitor_catalog() -> dict:
    import yaml

    return yaml.safe_load((REPO / "conf" / "aws" / "catalog_monitor.yml").read_text())[
        "monitoring_events"
    ]


def test_the_monitor_runs_after_each_successful_raw_ingestion_of_the_workflow(template):
    res = template["Resources"]
    (trigger,) = [
        t["Properties"]
        for t in resources(template, "AWS::Glue::Trigger").values()
        if t["Properties"]["Type"] == "CONDITIONAL"
    ]
    assert trigger["WorkflowName"] == {"Ref": "IngestRawWorkflow"}
    assert trigger["StartOnCreation"] is True
    (condition,) = trigger["Predicate"]["Conditions"]
    assert condition["LogicalOperator"] == "EQUALS" and condition["State"] == "SUCCEEDED"
    # after whichever raw ingestion job the engine parameter gives the workflow
    assert engine_choice(condition["JobName"], "pandas") == "IngestRawJob"
    assert engine_choice(condition["JobName"], "spark") == "IngestRawSparkJob"
    assert trigger["Actions"] == [{"JobName": {"Ref": "MonitorJob"}}]
    script = res["MonitorJob"]["Properties"]["Command"]["ScriptLocation"]["Fn::Sub"][0]
    assert script.endswith("/scripts/monitor.py")


@pytest.mark.parametrize("engine", ["pandas", "spark"])
def test_the_engine_parameter_hands_each_upload_to_one_engines_jobs_only(template, engine):
    """Every trigger that starts ingestion (events, sweep) and the monitor's condition name
    the jobs of one engine: an object is never given to the pandas and the Spark job both."""
    assert template["Parameters"]["IngestionEngine"]["AllowedValues"] == ["pandas", "spark"]
    assert template["Parameters"]["IngestionEngine"]["Default"] == "pandas"
    started = set()
    for trigger in resources(template, "AWS::Glue::Trigger").values():
        props = trigger["Properties"]
        started |= {engine_choice(a["JobName"], engine) for a in props["Actions"]}
        for condition in props.get("Predicate", {}).get("Conditions", []):
            started.add(engine_choice(condition["JobName"], engine))
    ingestion = {name for name in started if name.startswith("Ingest")}
    if engine == "spark":
        assert ingestion == {"IngestRawSparkJob", "IngestProcessedSparkJob"}
    else:
        assert ingestion == {"IngestRawJob", "IngestProcessedJob"}


def test_the_spark_jobs_take_their_size_the_jdbc_driver_and_a_closure_that_keeps_glues_own(
    template,
):
    jobs = glue_jobs(template)
    names = template["Mappings"]["Project"]["Names"]
    deploy = (REPO / "infra" / "deploy.sh").read_text()
    for name in SPARK_JOBS:
        raw = template["Resources"][name]["Properties"]
        assert raw["WorkerType"] == {"Ref": "SparkWorkerType"}, name
        assert raw["NumberOfWorkers"] == {"Ref": "SparkNumberOfWorkers"}, name
        arguments = jobs[name]["DefaultArguments"]
        # the jar deploy.sh uploads, at the key it uploads it to
        assert arguments["--extra-jars"] == f"s3://{BUCKET}/glue/{names['JdbcDriverJar']}"
        # installed as they are: no index, no resolution (Glue's pandas, numpy, pyarrow stay)
        assert arguments["--python-modules-installer-option"].split() == ["--no-index", "--no-deps"]
        assert arguments["--additional-python-modules"].endswith(
            template["Parameters"]["GlueSparkModules"]["Default"]
        )
        assert jobs[name]["Connections"]["Connections"] == [{"Ref": "GlueNetworkConnection"}]
    assert f"JDBC_JAR_KEY={names['JdbcDriverJar']} " in deploy
    assert '"s3://$BUCKET/$PREFIX/$JDBC_JAR_KEY"' in deploy
    assert "JDBC_JAR=${JDBC_JAR:-/usr/share/java/mariadb-java-client.jar}" in deploy
    import churn_kedro

    assert (
        template["Parameters"]["GlueSparkModules"]["Default"]
        == f"churn_kedro-{churn_kedro.__version__}.gluesparkwheels.zip"
    )
    assert "SPARK_MODULES=churn_kedro-${VERSION}.gluesparkwheels.zip" in deploy
    assert '"GlueSparkModules=$SPARK_MODULES"' in deploy
    # the scoring job's script is the score pipeline's wrapper
    assert jobs["ScoreSparkJob"]["Command"]["ScriptLocation"].endswith("/scripts/score.py")
    assert 'main("score", __file__)' in (REPO / "glue_wrappers" / "score.py").read_text()


def test_a_retrain_verdict_starts_the_retraining_and_notifies_the_topic(template):
    """The rule matches exactly the event VerdictEventsDataset publishes with the source of
    conf/aws/catalog_monitor.yml and verdict retrain; it notifies the retrain workflow
    (EventBridge starts Glue workflows, not jobs), whose trigger runs RetrainJob, and the
    SNS topic, whose policy lets only this rule publish."""
    monitoring = importlib.import_module("churn_kedro.datasets.monitoring_dataset")
    res = template["Resources"]
    (name,) = [
        n
        for n, r in resources(template, "AWS::Events::Rule").items()
        if r["Properties"]["EventPattern"]["source"] != ["aws.s3"]
    ]
    props = res[name]["Properties"]
    assert props["EventPattern"] == {
        "source": [monitor_catalog()["source"]],
        "detail-type": [monitoring.VerdictEventsDataset.DETAIL_TYPE],
        "detail": {"verdict": ["retrain"]},
    }
    assert "retrain" in monitoring.VERDICT_VALUES
    targets = {t["Id"]: t for t in props["Targets"]}
    assert set(targets) == {"retrain-workflow", "verdict-topic"}
    workflow = re.search(r"workflow/\$\{(\w+)\}", targets["retrain-workflow"]["Arn"]["Fn::Sub"])
    assert workflow.group(1) == "RetrainWorkflow"
    (start,) = [
        t["Properties"]
        for t in resources(template, "AWS::Glue::Trigger").values()
        if t["Properties"].get("WorkflowName") == {"Ref": "RetrainWorkflow"}
    ]
    assert start["Type"] == "EVENT" and start["Actions"] == [{"JobName": {"Ref": "RetrainJob"}}]
    role = targets["retrain-workflow"]["RoleArn"]["Fn::GetAtt"][0]
    arn = "arn:aws:glue:eu-west-1:123456789012:workflow/${RetrainWorkflow}"
    assert any(
        "glue:notifyEvent" in actions and arn in listed
        for actions, listed in role_grants(template, role)
    ), f"{role} may not start the retrain workflow"
    assert targets["verdict-topic"]["Arn"] == {"Ref": "VerdictTopic"}
    assert res["VerdictTopic"]["Type"] == "AWS::SNS::Topic"
    (policy,) = resources(template, "AWS::SNS::TopicPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sns:Publish"
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": [name, "Arn"]}


def test_the_monitor_role_may_publish_only_the_verdict_metric_and_event(template):
    catalog = monitor_catalog()
    statements = {s["Sid"]: s for role, s in iam_statements(template) if role == "GlueMonitorRole"}
    metric = statements["PutVerdictMetric"]
    assert metric["Action"] == "cloudwatch:PutMetricData"
    assert metric["Condition"] == {"StringEquals": {"cloudwatch:namespace": catalog["namespace"]}}
    event = statements["PutVerdictEvent"]
    assert event["Action"] == "events:PutEvents"
    (bus,) = resolve([event["Resource"]], template, {"BucketName": BUCKET})
    assert bus == f"arn:aws:events:eu-west-1:123456789012:event-bus/{catalog['event_bus']}"
    # nobody else may put the metric: the star resource is held by its namespace condition
    for role, statement in iam_statements(template):
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        if "cloudwatch:PutMetricData" in actions:
            assert role == "GlueMonitorRole" and "Condition" in statement
    res = template["Resources"]["MonitorJob"]["Properties"]
    assert res["Role"] == {"Fn::GetAtt": ["GlueMonitorRole", "Arn"]}
