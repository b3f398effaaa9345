# Real-vs-AI image detector: set up, train, tune, evaluate, test.
# Every target that runs Python first makes sure the virtual environment exists and is current.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# DATA: a folder with ai/ and real/ (or train/ val/ test/), or a CSV manifest. RUN: a run folder.
DATA   ?= data
RUN    ?= $(lastword $(sort $(wildcard runs/*/best.pt)))
# The model `make serve` exports and serves: the default model shipped in the repo once there is one,
# else the newest calibrated run.
CHECKPOINT ?= $(or $(wildcard models/default/model.pt),$(shell ls -t runs/*/model.pt 2>/dev/null | head -n 1))
ONNX_MODEL ?= model_store/detector.onnx
CHROMIUM   := /usr/bin/chromium
PARAMS ?=
ARGS   ?=

.PHONY: help setup train tune evaluate export serve test lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required); set PYTHON=..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the pinned dependencies

train: $(STAMP)  ## train, calibrate and evaluate: make train DATA=path [PARAMS=runs/tune/best_params.json] [ARGS=...]
	$(BIN)/python -m training.train --data $(DATA) $(if $(PARAMS),--params-file $(PARAMS)) $(ARGS)

tune: $(STAMP)  ## Optuna search: make tune DATA=path [ARGS="--trials 20 --timeout 3600"]
	$(BIN)/python -m training.tune --data $(DATA) $(ARGS)

evaluate: $(STAMP)  ## re-calibrate and evaluate a run: make evaluate [RUN=runs/NAME] [ARGS=--perturb]
	@test -n "$(RUN)" || { echo "error: no run found under runs/; train first or pass RUN=runs/NAME" >&2; exit 2; }
	$(BIN)/python -m training.evaluate --run $(RUN) $(ARGS)

export: $(STAMP)  ## export CHECKPOINT to ONNX_MODEL (model_store/detector.onnx), parity-checked
	@test -n "$(CHECKPOINT)" || { echo "error: no trained model yet: run make train DATA=path first (or pass CHECKPOINT=...)" >&2; exit 2; }
	@echo "exporting $(CHECKPOINT)"
	$(BIN)/python -m export.onnx --checkpoint $(CHECKPOINT) --output $(ONNX_MODEL)

serve: export  ## the web app and upload page on http://127.0.0.1:8000 [ARGS="--host 0.0.0.0 --port 8000"]
	$(BIN)/python -m serving --model $(ONNX_MODEL) $(ARGS)

# The page tests drive Debian's Chromium (never a downloaded browser).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; \
	else echo "error: the page tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi

test: $(STAMP) $(CHROMIUM)  ## run the test suite
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:  ## remove build outputs (keeps .venv and runs/)
	rm -rf build dist *.egg-info .pytest_cache model_store/*.mar
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
