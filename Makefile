# The newcomer's two commands: `make demo` and `make test`. Both create the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DVC_VENV := .venv-dvc

.PHONY: demo test bench bench-dvc lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Run the example ML pipeline end to end (prepare -> featurize -> train -> evaluate).
demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

## Lint, the import layers (pyproject.toml [tool.importlinter]), then the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check repro tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

## Benchmarks: hashing throughput and pipeline speed, as ratios to references measured alongside.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

## The same benchmarks with DVC 3.67.1 measured beside repro (installed in .venv-dvc).
$(DVC_VENV)/bin/dvc:
	$(PYTHON) -m venv $(DVC_VENV)
	$(DVC_VENV)/bin/pip install -q -U pip
	$(DVC_VENV)/bin/pip install -q 'dvc==3.67.1'

bench-dvc: $(STAMP) $(DVC_VENV)/bin/dvc
	REPRO_BENCH_DVC=$(CURDIR)/$(DVC_VENV)/bin/dvc $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check repro tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/ruff format --check repro tests benchmarks || true

clean:
	rm -rf $(VENV) $(DVC_VENV) .pytest_cache .ruff_cache
