#!/usr/bin/env bash
# The Glue 5.0 dependency closure, prebuilt: every wheel the project wheel needs, at the
# pins of requirements.txt and constraints.txt, for Glue 5.0's platform (Amazon Linux 2023,
# glibc 2.34, CPython 3.11, x86_64), binary only. infra/deploy.sh zips it with the project
# wheel ("zip of wheels", infra/README.md); tests/test_infra.py resolves it offline.
#
#   infra/wheelhouse.sh <dest folder> [<project wheel>] [<Spark dest folder>]
#
# With a third folder, the Spark jobs' set goes there too: the same wheels without those of
# Glue's own runtime (GLUE_PROVIDED), which a Spark job must keep: its pyspark works with
# them. The jobs install that set with --no-deps, so nothing else is resolved or replaced.
set -euo pipefail

cd "$(dirname "$0")/.."
DEST=${1:?destination folder}
PYTHON=${PYTHON:-.venv/bin/python}
GLIBC_MINOR_MAX=34   # Amazon Linux 2023
GLUE_PROVIDED="pyspark py4j pandas numpy pyarrow"   # Glue 5.0's, kept by the Spark jobs
# manylinux_2_34 .. manylinux_2_17, then the legacy manylinux2014 alias (CatBoost's only
# tag); pip prefers the platforms in this order
PLATFORMS=()
for minor in $(seq $GLIBC_MINOR_MAX -1 17); do PLATFORMS+=(--platform "manylinux_2_${minor}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64)
TARGET=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 "${PLATFORMS[@]}")

mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --dest "$DEST" "${TARGET[@]}" -c constraints.txt -r requirements.txt
if [[ -n ${2:-} ]]; then cp "$2" "$DEST/"; fi
# the closure is complete: it installs for that platform from these files alone
"$PYTHON" -m pip install --quiet --dry-run --ignore-installed --no-index --find-links "$DEST" \
  --target "$(mktemp -d)" "${TARGET[@]}" -r requirements.txt ${2:+"$DEST/$(basename "$2")"}
if [[ -n ${3:-} ]]; then
  mkdir -p "$3"
  for wheel in "$DEST"/*.whl; do
    name=$(basename "$wheel")
    # a wheel's file name starts with its distribution name (normalised: "-" -> "_")
    [[ " $GLUE_PROVIDED " == *" ${name%%-*} "* ]] || cp "$wheel" "$3/"
  done
fi
