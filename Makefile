# Two commands do everything on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# PROFILE=production: the Dagster instance and the registry on PostgreSQL, steps on Celery workers, an S3 server;
# the profile's command starts and stops them (python -m mlops_assets.profiles.production --help).
PROFILE ?= embedded
PRODUCTION := $(PY) -m mlops_assets.profiles.production

.PHONY: demo test ui bench bench-scale bench-profiles bench-serving chaos deploy-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: mlops_assets/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

demo: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml
ifeq ($(PROFILE),production)
	$(PRODUCTION) demo $(ARGS)
else
	$(PY) -m mlops_assets.demo.replay $(ARGS)
endif

ui: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml
ifeq ($(PROFILE),production)
	$(PRODUCTION) ui
else
	$(VENV)/bin/dagster dev -w workspace.yaml
endif

# Two test processes (pytest-xdist): the end-to-end tests mostly wait on daemons, workers and polling.
# Work stealing (an idle process takes queued tests from the other) and the end-to-end tests queued first
# (tests/conftest.py) keep one long test from running alone at the end: 16 min 16 s against 19 min 24 s for
# the same 854 tests with xdist's default scheduling, on this machine on the same day.
# TEST_WORKERS=0 runs in one process (pytest's own output, -x, pdb).
TEST_WORKERS ?= 2
TEST_DIST = $(if $(filter 0,$(TEST_WORKERS)),,--dist worksteal)
test: $(VENV)/.installed
	$(PY) -m pytest -n $(TEST_WORKERS) $(TEST_DIST) $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m mlops_assets.benchmarks.speed $(ARGS)
	$(PY) -m mlops_assets.benchmarks.detection $(DETECTION_ARGS)
	$(PY) -m mlops_assets.benchmarks.scale $(SCALE_ARGS)
	$(PY) -m mlops_assets.benchmarks.profiles $(PROFILES_ARGS)

# The profiles alone: a 30-day backfill on 1, 2 and 4 Celery workers, and the cost of one run on each profile.
bench-profiles: $(VENV)/.installed
	$(PY) -m mlops_assets.benchmarks.profiles $(PROFILES_ARGS)

# Scale alone: ingest of a 5,000,000-row day, landing-sensor ticks against a large archive, the daily cycle
# at 30 and 1,000 days of history (SCALE_ARGS="--only ingest --rows 1000000" for a part).
bench-scale: $(VENV)/.installed
	$(PY) -m mlops_assets.benchmarks.scale $(SCALE_ARGS)

# This service against MLflow's `mlflow models serve` on the same model (not part of make test or make bench).
# The first run builds MLflow's own environment in .bench/mlflow-venv from the package registry (a few minutes);
# SERVING_ARGS="--quick" for a short smoke run.
bench-serving: $(VENV)/.installed
	$(PY) -m mlops_assets.benchmarks.serving $(SERVING_ARGS)

chaos: $(VENV)/.installed
	$(PY) -m mlops_assets.benchmarks.chaos $(ARGS)

# The deployment's offline check: deploy/Dockerfile's install step in a throwaway venv, then its CMD (the gRPC
# code server) until `dagster api grpc-health-check` answers; minutes, not part of make test.
deploy-check: $(VENV)/.installed
	$(PY) deploy/check.py

clean:
ifeq ($(PROFILE),production)
	$(PRODUCTION) clean
endif
	rm -rf $(DAGSTER_HOME) data/landing data/models data/registry \
		data/quarantine data/warehouse data/ledger data/deployment data/replay_state.json
