# The two commands of a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# The versions CI installs; `make constraints` rewrites it from the venv.
CONSTRAINTS ?= constraints/ci.txt

.PHONY: demo test test-all lint typecheck constraints install docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[train,dev,trt-check]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/edgekd build recipes/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m ""

lint: install
	$(BIN)/ruff check edgekd tests benchmarks scripts
	$(BIN)/ruff format --check edgekd tests benchmarks scripts

typecheck: install
	$(BIN)/mypy  # edgekd/, as [tool.mypy] in pyproject.toml says

constraints:
	$(BIN)/python scripts/constraints.py > $(CONSTRAINTS).tmp && mv $(CONSTRAINTS).tmp $(CONSTRAINTS)

# The documentation site into site/, strict: a warning (a broken link, a missing page) fails.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/mkdocs build --strict

clean:
	rm -rf runs site .pytest_cache
