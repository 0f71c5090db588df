# Two commands do everything on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: demo test ui bench chaos clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: mlops_assets/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp $< $@

demo: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m mlops_assets.demo.replay $(ARGS)

ui: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml

test: $(VENV)/.installed
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m mlops_assets.benchmarks.speed $(ARGS)
	$(PY) -m mlops_assets.benchmarks.detection $(DETECTION_ARGS)

chaos: $(VENV)/.installed
	$(PY) -m mlops_assets.benchmarks.chaos $(ARGS)

clean:
	rm -rf $(DAGSTER_HOME) data/landing data/models data/registry \
		data/quarantine data/warehouse data/ledger data/deployment data/replay_state.json
