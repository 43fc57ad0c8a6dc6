# Two commands on a fresh machine: `make test` and `make reproduce`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first, pinned: this exact version has a local CPU wheel; any other spec pulls GBs of CUDA wheels.
TORCH_SPEC := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install test test-all reproduce reproduce-full lint format clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Re-install only when the package metadata changed (re-running is fast).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test,autospec,t2po,resd]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "" $(PYTEST_ARGS)

# `make reproduce SYSTEMS="cav heapa"` runs some systems only (default: all built).
reproduce: $(STAMP)
	$(BIN)/tenfold reproduce $(SYSTEMS) --quick --out reports
	@echo "Report written to reports/REPORT.md"

reproduce-full: $(STAMP)
	$(BIN)/tenfold reproduce $(SYSTEMS) --full --out reports
	@echo "Report written to reports/REPORT.md"

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf $(VENV) reports .pytest_cache
