#!/usr/bin/env bash
# Deploy churn-kedro to AWS (infra/README.md explains each step).
#
#   BUCKET=my-churn-bucket infra/deploy.sh stack          # create/update the stack (keeps the current image tag;
#                                                         #   no Lambda/API until a tag is given)
#   BUCKET=my-churn-bucket infra/deploy.sh artifacts      # kedro package, the zips of wheels (wheel + its pinned closure for
#                                                         #   Glue 5.0; the Spark jobs' without Glue's pandas, numpy, pyarrow),
#                                                         #   conf, Glue scripts, RDS CA bundle, JDBC driver jar -> s3://$BUCKET/glue/
#   BUCKET=my-churn-bucket infra/deploy.sh bootstrap      # create the application MySQL user (Glue job; after artifacts)
#   BUCKET=my-churn-bucket infra/deploy.sh image v1       # build and push the serving image, tag v1
#   BUCKET=my-churn-bucket infra/deploy.sh stack v1       # the same stack, now with the Lambda + API on image v1
#   BUCKET=my-churn-bucket infra/deploy.sh all v1         # all of the above, in order (bootstrap included)
#   BUCKET=my-churn-bucket infra/deploy.sh teardown       # empty the bucket and the repository, delete the stack
#
# Environment: BUCKET (required), STACK (default churn), AWS_REGION (default from the aws CLI),
# DB_CLASS, DB_STORAGE, SCHEDULE, SWEEP_SCHEDULE, NETWORK_EGRESS (NatGateway|VpcEndpoints),
# API_AUTH (API_KEY|AWS_IAM), ENGINE (pandas|spark: which ingestion jobs the events start),
# SPARK_WORKER_TYPE, SPARK_WORKERS (stack parameters; the template's defaults otherwise),
# DB_CA_BUNDLE (a local copy of the RDS CA bundle instead of downloading it),
# JDBC_JAR (the MariaDB Connector/J jar of the Spark jobs; default Debian's libmariadb-java).
set -euo pipefail

cd "$(dirname "$0")/.."
: "${BUCKET:?set BUCKET to the data bucket name}"
STACK=${STACK:-churn}
REGION=${AWS_REGION:-$(aws configure get region)}
PREFIX=glue                      # Mappings.Project.Names.ArtifactsPrefix in infra/template.yaml
PYTHON=${PYTHON:-.venv/bin/python}
VERSION=$($PYTHON -c 'import churn_kedro; print(churn_kedro.__version__)')
WHEEL=churn_kedro-${VERSION}-py3-none-any.whl
MODULES=churn_kedro-${VERSION}.gluewheels.zip   # the template's GlueModules parameter
SPARK_MODULES=churn_kedro-${VERSION}.gluesparkwheels.zip   # the template's GlueSparkModules parameter
# The Spark jobs' JDBC driver (--extra-jars): apt-get install libmariadb-java puts it here
JDBC_JAR=${JDBC_JAR:-/usr/share/java/mariadb-java-client.jar}
JDBC_JAR_KEY=jars/mariadb-java-client.jar   # Mappings.Project.Names.JdbcDriverJar in infra/template.yaml

output() {
  aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}

# The image tag the stack runs now ("" before the first image): redeploying the
# infrastructure alone must not remove a running API.
current_tag() {
  aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK" \
    --query "Stacks[0].Parameters[?ParameterKey=='ImageTag'].ParameterValue" --output text 2>/dev/null || true
}

deploy_stack() {
  local tag=${1:-}
  local overrides=("BucketName=$BUCKET" "GlueModules=$MODULES" "GlueSparkModules=$SPARK_MODULES" "ImageTag=$tag")
  [[ -n ${DB_CLASS:-} ]] && overrides+=("DBInstanceClass=$DB_CLASS")
  [[ -n ${DB_STORAGE:-} ]] && overrides+=("DBAllocatedStorage=$DB_STORAGE")
  [[ -n ${SCHEDULE:-} ]] && overrides+=("RetrainSchedule=$SCHEDULE")
  [[ -n ${SWEEP_SCHEDULE:-} ]] && overrides+=("IngestSweepSchedule=$SWEEP_SCHEDULE")
  [[ -n ${NETWORK_EGRESS:-} ]] && overrides+=("NetworkEgress=$NETWORK_EGRESS")
  [[ -n ${API_AUTH:-} ]] && overrides+=("ApiAuthorization=$API_AUTH")
  [[ -n ${ENGINE:-} ]] && overrides+=("IngestionEngine=$ENGINE")
  [[ -n ${SPARK_WORKER_TYPE:-} ]] && overrides+=("SparkWorkerType=$SPARK_WORKER_TYPE")
  [[ -n ${SPARK_WORKERS:-} ]] && overrides+=("SparkNumberOfWorkers=$SPARK_WORKERS")
  aws cloudformation deploy --region "$REGION" --stack-name "$STACK" \
    --template-file infra/template.yaml --capabilities CAPABILITY_IAM \
    --parameter-overrides "${overrides[@]}"
  aws cloudformation describe-stacks --region "$REGION" --stack-name "$STACK" \
    --query "Stacks[0].Outputs" --output table
}

# The CA bundle that verifies RDS's TLS certificates (every region's CAs in one file), or
# a copy already downloaded: DB_CA_BUNDLE=/path/to/global-bundle.pem.
RDS_CA_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
CA_BUNDLE=rds-global-bundle.pem  # Mappings.Project.Names.DatabaseCaBundle in infra/template.yaml

upload_artifacts() {
  # `kedro package`: the wheel and conf-churn_kedro.tar.gz (conf/ without local/*.yml)
  rm -rf dist
  "$(dirname "$PYTHON")/kedro" package
  if [[ -n ${DB_CA_BUNDLE:-} ]]; then cp "$DB_CA_BUNDLE" "dist/$CA_BUNDLE"
  else curl --fail --silent --show-error --location --proto '=https' "$RDS_CA_URL" -o "dist/$CA_BUNDLE"; fi
  grep -q 'BEGIN CERTIFICATE' "dist/$CA_BUNDLE" || { echo "dist/$CA_BUNDLE: no certificate" >&2; exit 1; }
  aws s3 cp --region "$REGION" "dist/$CA_BUNDLE" "s3://$BUCKET/$PREFIX/$CA_BUNDLE"
  # the zip of wheels: the project wheel and every dependency at its pin, for Glue 5.0
  # (Amazon Linux 2023, CPython 3.11, x86_64), so a job installs nothing from PyPI
  [[ -f $JDBC_JAR ]] || { echo "$JDBC_JAR: no JDBC driver (apt-get install libmariadb-java, or JDBC_JAR=...)" >&2; exit 1; }
  rm -rf dist/wheels dist/sparkwheels
  infra/wheelhouse.sh dist/wheels "dist/$WHEEL" dist/sparkwheels
  (cd dist/wheels && zip -q -0 "../$MODULES" -- *.whl)
  (cd dist/sparkwheels && zip -q -0 "../$SPARK_MODULES" -- *.whl)
  aws s3 cp --region "$REGION" "dist/$MODULES" "s3://$BUCKET/$PREFIX/$MODULES"
  aws s3 cp --region "$REGION" "dist/$SPARK_MODULES" "s3://$BUCKET/$PREFIX/$SPARK_MODULES"
  aws s3 cp --region "$REGION" "$JDBC_JAR" "s3://$BUCKET/$PREFIX/$JDBC_JAR_KEY"
  aws s3 cp --region "$REGION" dist/conf-churn_kedro.tar.gz "s3://$BUCKET/$PREFIX/conf-churn_kedro.tar.gz"
  for script in glue_wrappers/*.py; do
    aws s3 cp --region "$REGION" "$script" "s3://$BUCKET/$PREFIX/scripts/$(basename "$script")"
  done
}

push_image() {
  local tag=${1:?image tag}
  local repository
  repository=$(output ImageRepositoryUri)
  aws ecr get-login-password --region "$REGION" | docker login --username AWS --password-stdin "${repository%%/*}"
  docker build --platform linux/amd64 --provenance=false -f docker/Dockerfile -t "$repository:$tag" .
  docker push "$repository:$tag"
}

# The application user the jobs connect as, created from the master user by a Glue job in
# the VPC (the database is reachable from nowhere else); run again after a rotation.
bootstrap() {
  local job run state
  job=$(output BootstrapJobName)
  run=$(aws glue start-job-run --region "$REGION" --job-name "$job" --query JobRunId --output text)
  while state=$(aws glue get-job-run --region "$REGION" --job-name "$job" --run-id "$run" \
      --query JobRun.JobRunState --output text); [[ $state =~ ^(STARTING|RUNNING|WAITING|STOPPING)$ ]]; do
    sleep 15
  done
  echo "$job: $state"
  [[ $state == SUCCEEDED ]]
}

teardown() {
  # A versioned bucket deletes only when every version and delete marker is gone; the
  # stack keeps the bucket (DeletionPolicy Retain), so it is removed here explicitly.
  $PYTHON - "$BUCKET" "$REGION" <<'EOF'
import sys, boto3
bucket = boto3.resource("s3", region_name=sys.argv[2]).Bucket(sys.argv[1])
bucket.object_versions.delete()
bucket.delete()
EOF
  aws cloudformation delete-stack --region "$REGION" --stack-name "$STACK"
  aws cloudformation wait stack-delete-complete --region "$REGION" --stack-name "$STACK"
}

case ${1:-} in
  stack) deploy_stack "${2:-$(current_tag)}" ;;
  artifacts) upload_artifacts ;;
  bootstrap) bootstrap ;;
  image) push_image "${2:-}" ;;
  all)
    tag=${2:?image tag}
    deploy_stack "$(current_tag)"
    upload_artifacts
    bootstrap
    push_image "$tag"
    deploy_stack "$tag"
    ;;
  teardown) teardown ;;
  *) sed -n '2,/^set -euo/p' "$0" | grep '^#'; exit 2 ;;
esac
