# charmeta - the two set-up commands on a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Dagster instance of a dataset lives in its output root (<output>/.dagster_home), however it is
# launched: `make demo`, `make ui` and a plain `charmeta run --output out/demo` share out/demo/.dagster_home.

.PHONY: install demo test test-fast test-slow ui app bench eval chaos schema clean lint lock

# Versions come from constraints.txt (the environment the tests passed in; `make lock` rewrites it).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[platform,dev,images,app,cluster,lint,cleaning]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install charmeta into it

demo: $(STAMP)  ## run the main job on the bundled sample
	$(BIN)/charmeta run --source samples/ --output out/demo

# Default run skips @slow tests locally; CI (CI=true) runs everything.
test: $(STAMP)
	if [ "$${CI:-}" = "true" ]; then $(BIN)/pytest -q; else $(BIN)/pytest -q -m "not slow"; fi

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

ui: $(STAMP)  ## Dagster webserver + daemon on 127.0.0.1:3000
	$(BIN)/charmeta ui

app: $(STAMP)  ## the demo app (Gradio) on http://127.0.0.1:7860 (PORT=N to change)
	$(BIN)/charmeta app --port $${PORT:-7860}

bench: $(STAMP)
	$(BIN)/charmeta bench

eval: $(STAMP)
	$(BIN)/charmeta eval

chaos: $(STAMP)
	$(BIN)/pytest -q tests/reliability -p no:cacheprovider

schema: $(STAMP)  ## regenerate charmeta/schema/attributes.schema.json
	$(BIN)/charmeta schema --write

lint: $(STAMP)  ## ruff (lint + format), import-linter contracts, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

lock:  ## rewrite constraints.txt from the installed versions (run where the tests passed)
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY)) tools/lock.py

clean:
	rm -rf out .dagster_home .pytest_cache
