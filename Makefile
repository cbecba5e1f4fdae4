# charmeta - the two set-up commands on a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast test-slow ui app bench eval chaos schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[platform,dev,images,app,cluster]'
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

clean:
	rm -rf out .dagster_home .pytest_cache
