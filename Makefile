# Two commands for a fresh machine:  `make run`  (set up, then the whole pipeline)  and  `make test`.
SHELL := /bin/bash
VENV    ?= .venv
PYTHON  ?= python3
# torch first, so nothing pulls a multi-GB CUDA build; on a GPU box pass TORCH='torch==2.13.0 --index-url ...'
TORCH   ?= torch==2.13.0
# a lyrics file or folder to import into data/raw/lyrics/ (make run LYRICS=path)
LYRICS  ?=
PORT    ?= 4200
PY      := $(VENV)/bin/python

# Stage commands in dvc.yaml say `python`/`dvc`: make them the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Embedded defaults: SQLite MLflow store at the project root, Prefect's ephemeral API (slow to
# start on small machines, hence the timeout), no telemetry.
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
# Stage logs in Prefect's output and UI, also in the subprocesses a served deployment starts.
export PREFECT_LOGGING_EXTRA_LOGGERS ?= tasks

LYRICS_STAGES := lyrics-clean lyrics-tokenize lyrics-split lyrics-vocab lyrics-train lyrics-evaluate lyrics-register

.PHONY: setup run lyrics test repro serve ui clean-outputs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

run: lyrics

# Import LYRICS if given, run the train-lyrics flow, then version the data: the flow's outputs are
# committed to DVC (dvc.lock + cache) and pushed to the default remote, so `dvc repro` is a no-op after.
lyrics: setup
	@if [ -n "$(LYRICS)" ]; then \
	  test -e "$(LYRICS)" || { echo "error: LYRICS=$(LYRICS) does not exist; pass a lyrics .txt/.lrc file or folder" >&2; exit 2; }; \
	  mkdir -p data/raw/lyrics; \
	  if [ -d "$(LYRICS)" ]; then cp -r "$(LYRICS)/." data/raw/lyrics/; else cp "$(LYRICS)" data/raw/lyrics/; fi; \
	fi
	$(PY) -m flows.train_lyrics
	dvc add -q data/raw/lyrics
	dvc commit -q -f $(LYRICS_STAGES)
	dvc push -q
	@echo "done: mlflow ui with 'make ui'; generate with: $(PY) -m tasks.generate --start 分手 --length 50"

test: setup
	$(PY) -m pytest

repro: setup
	dvc repro

# A Prefect server on 127.0.0.1 plus the served deployments; stop both with Ctrl-C.
serve: setup
	@$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PORT) & server=$$!; \
	trap "kill $$server" EXIT; \
	export PREFECT_API_URL=http://127.0.0.1:$(PORT)/api; \
	until curl -sf $$PREFECT_API_URL/health >/dev/null; do sleep 1; done; \
	echo "serving; in another shell: PREFECT_API_URL=$$PREFECT_API_URL prefect deployment run train-lyrics/train-lyrics --watch"; \
	$(PY) -m flows.serve

ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000
