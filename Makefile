# The newcomer's two commands: `make demo` and `make test`. Both create the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## Run the example ML pipeline end to end (prepare -> featurize -> train -> evaluate).
demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

## Lint, then the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check repro tests benchmarks
	$(BIN)/python -m pytest -q

## Benchmarks: hashing throughput and pipeline speed, as ratios to references measured alongside.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check repro tests benchmarks
	$(BIN)/ruff format --check repro tests benchmarks || true

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
