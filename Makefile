# The commands a user types (see docs/architecture.md: commands). Each one creates .venv first when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: run test test-fast lint serve viz bench watch constraints clean checkov

# Two stamps: make run/serve/watch need only the runtime (requirements.txt); make test, lint,
# viz and bench add the tools (requirements-dev.txt) on top, the first time they run.
RUNTIME := $(VENV)/.runtime-installed
DEV     := $(VENV)/.dev-installed

$(RUNTIME): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt requirements-spark.txt requirements-catboost.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	touch $@

venv: $(DEV)

# checkov (infra/template.yaml's security checks, run by tests/test_infra.py) in a venv of its
# own: its dependencies clash with the project's pins. constraints-checkov.txt pins them all.
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/bin/checkov: requirements-checkov.txt constraints-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -c constraints-checkov.txt -r requirements-checkov.txt
	touch $@

checkov: $(CHECKOV_VENV)/bin/checkov

run: $(RUNTIME)
	$(BIN)/kedro run --pipelines ingest_raw
	$(BIN)/kedro run --pipelines retrain $(RETRAIN_ARGS)
	$(BIN)/kedro run --pipelines ingest_processed
	$(BIN)/churn-registry status

test: lint $(CHECKOV_VENV)/bin/checkov
	$(BIN)/python -m pytest

# The edit loop: no whole-pipeline runs, no servers, no MariaDB (a minute or two).
test-fast: $(DEV)
	$(BIN)/python -m pytest -m "not slow and not mysql"

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# make serve ENV=mydata: the registry of conf/mydata's catalog (see README: serving)
serve: $(RUNTIME)
	$(BIN)/python -m churn_kedro.serving --host 127.0.0.1 --port 8080 $(if $(ENV),--env $(ENV))

viz: $(DEV)
	$(BIN)/kedro viz run --no-browser --host 127.0.0.1 --port 4141

bench: $(DEV)
	$(BIN)/python benchmarks/run_all.py

watch: $(RUNTIME)
	$(BIN)/python -m churn_kedro.watch

constraints: $(DEV)
	{ echo "# Every package of the dev environment, pinned (pip install -c constraints.txt). Regenerate: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -vE '^(pip|setuptools|wheel)=='; } > constraints.txt

clean:
	rm -rf $(VENV) data/churn.db data/06_models/registry data/08_reporting/*.json
