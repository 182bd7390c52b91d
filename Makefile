# The newcomer's two commands: `make demo` and `make test`. Both create the virtualenv first;
# `make demo` installs only what the demo needs (the `demo` extra), `make test` the dev set
# (`[dev]`: every extra, the docs tools, tests and linters).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
DOCS_STAMP := $(VENV)/.installed-docs
STAMP := $(VENV)/.installed-dev

DVC_VENV := .venv-dvc

.PHONY: demo test docs bench bench-dvc lint venv clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

# One stamp per extra installed (.installed-demo, -docs, -dev), redone when pyproject.toml changes.
# The distribution was called `repro` before it became `repro-engine`: an old venv drops that one.
# setuptools' "Editable installation" notice (folders named like the package could shadow it; ours
# maps only `repro*`) is information, not a problem: silenced for this one command.
# Installs are pinned by constraints.txt (pip's resolver otherwise backtracks for many minutes).
$(VENV)/.installed-%: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip uninstall -q -y repro 2>/dev/null || true
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -c constraints.txt -e '.[$*]'
	touch $@

## Re-pin constraints.txt to what the dev venv holds now (after changing dependencies).
constraints: $(STAMP)
	{ sed -n '1,/^# Regenerate/p' constraints.txt; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -e '^-e' -e '@ file' -e '^repro'; } > constraints.tmp
	mv constraints.tmp constraints.txt

venv: $(STAMP)

## Run the example ML pipeline end to end (prepare -> featurize -> train -> evaluate).
demo: $(DEMO_STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

## The documentation site (mkdocs.yml) into build/site; a warning is an error.
docs: $(DOCS_STAMP)
	@# no --quiet: mkdocs 1.6 then stops counting warnings and --strict passes anything
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "Site: $(CURDIR)/build/site/index.html"

## Lint, the import layers (pyproject.toml [tool.importlinter]), then the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check repro tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

## Benchmarks: issue 15's table (DVC beside when .venv-dvc exists) -> benchmarks/results/latest.{json,md}.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

## The same benchmarks with DVC 3.67.1 measured beside repro (installed in .venv-dvc).
$(DVC_VENV)/bin/dvc:
	$(PYTHON) -m venv $(DVC_VENV)
	$(DVC_VENV)/bin/pip install -q -U pip
	$(DVC_VENV)/bin/pip install -q 'dvc[s3]==3.67.1'

bench-dvc: $(STAMP) $(DVC_VENV)/bin/dvc
	REPRO_BENCH_DVC=$(CURDIR)/$(DVC_VENV)/bin/dvc $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check repro tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/ruff format --check repro tests benchmarks || true

clean:
	rm -rf $(VENV) $(DVC_VENV) .pytest_cache .ruff_cache
