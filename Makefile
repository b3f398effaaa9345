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

.PHONY: help setup train tune evaluate export serve test lint clean archive java-check serve-torchserve stop-torchserve ts-manage grpc-stubs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt requirements-serve.txt requirements-torchserve.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required); set PYTHON=..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the pinned dependencies

train: $(STAMP)  ## train, calibrate and evaluate: make train DATA=path [PARAMS=runs/tune/best_params.json] [ARGS=...]
	$(BIN)/python -m training.train --data $(DATA) $(if $(PARAMS),--params-file $(PARAMS)) $(ARGS)

# The shipped model (models/default/MODEL_CARD.md): models/default/recipe.json on realvsai-v1, split by source,
# calibrated on validation sources and measured on test sources it never saw, then copied into models/default/.
DEFAULT_DATA ?= ../shared/data/realvsai-v1/manifest.csv
DEFAULT_RUN  ?= runs/default-v1
.PHONY: default-model crossval shortcuts
default-model: $(STAMP)  ## retrain the shipped model from its recipe [DEFAULT_DATA=.../manifest.csv] (about 1 h on 2 cores)
	$(BIN)/python -m training.train --data $(DEFAULT_DATA) --config models/default/recipe.json --no-evaluate
	$(BIN)/python -m training.evaluate --run $(DEFAULT_RUN) --perturb
	cp $(DEFAULT_RUN)/model.pt models/default/model.pt

crossval: $(STAMP)  ## compare recipes on unseen sources (source k-fold): make crossval DATA=manifest [ARGS="--recipes FILE"]
	$(BIN)/python -m training.crossval --data $(DATA) $(ARGS)

shortcuts: $(STAMP)  ## how well file size, format, JPEG quality and colour alone predict the label: make shortcuts DATA=...
	$(BIN)/python -m training.shortcuts --data $(DATA) $(ARGS)

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

# int8 (docs/quantization.md): calibrated on CALIBRATION (a run folder: its train split; or a folder of images),
# judged against fp32 on the run's test split; INT8_MODEL is kept only if it ships, the JSON report always.
INT8_MODEL  ?= model_store/detector.int8.onnx
CALIBRATION ?= $(patsubst %/,%,$(dir $(CHECKPOINT)))
.PHONY: quantize
quantize: export  ## int8 static QDQ model, kept only if faster and < 1 point less accurate [CALIBRATION=run|folder]
	$(BIN)/python -m export.quantize --model $(ONNX_MODEL) --calibration $(CALIBRATION) --output $(INT8_MODEL) $(ARGS)

# TorchServe (docs/torchserve.md). MAR_FORMAT=onnx packs the exported ONNX_MODEL (the default: ONNX Runtime in
# the worker, ~6x faster than eager on a CPU); MAR_FORMAT=torch packs CHECKPOINT for eager PyTorch.
MAR_NAME    ?= detector
MAR_VERSION ?= 1.0
MAR_FORMAT  ?= onnx
MAR_MODEL   := $(if $(filter torch,$(MAR_FORMAT)),$(CHECKPOINT),$(ONNX_MODEL))
# the model config packed with it: torchserve/model-config.yaml, or MAR_CONFIG=torchserve/model-config-gpu.yaml
# (with MAR_FORMAT=torch) for GPU workers
MAR_CONFIG  ?=
TS_CONFIG   ?= torchserve/config.properties

archive: $(STAMP) $(if $(filter onnx,$(MAR_FORMAT)),export)  ## TorchServe archive model_store/MAR_NAME.mar [MAR_FORMAT=onnx|torch MAR_VERSION=1.0]
	@test -n "$(MAR_MODEL)" || { echo "error: no trained model yet: run make train DATA=path first (or pass CHECKPOINT=...)" >&2; exit 2; }
	$(BIN)/python -m handlers.archive --model $(MAR_MODEL) --output model_store/$(MAR_NAME).mar --version $(MAR_VERSION) \
		$(if $(MAR_CONFIG),--config-file $(MAR_CONFIG))

java-check:  ## fail clearly when TorchServe's Java 17 is missing
	@if [ -n "$$JAVA_HOME" ]; then test -x "$$JAVA_HOME/bin/java"; else command -v java >/dev/null 2>&1; fi || \
	{ echo "error: TorchServe needs Java 17 and found no java (on PATH, or in JAVA_HOME when set): apt-get install openjdk-17-jre-headless" >&2; exit 1; }

serve-torchserve: java-check archive  ## TorchServe on 127.0.0.1 (REST 8080/8081/8082, gRPC 7070/7071); tokens in ./key_file.json
	$(BIN)/torchserve --start --foreground --ts-config $(TS_CONFIG) --model-store model_store --ncs

stop-torchserve: $(STAMP)  ## stop the TorchServe started by serve-torchserve
	$(BIN)/torchserve --stop

ts-manage: $(STAMP)  ## TorchServe management: make ts-manage ARGS="list | describe detector | register detector-v2.mar | set-default detector 2.0 | scale detector --min-workers 2"
	$(BIN)/python -m handlers.manage $(ARGS)

grpc-stubs: $(STAMP)  ## generate TorchServe's gRPC stubs into handlers/grpc_gen/ (git-ignored)
	$(BIN)/python -m handlers.grpc_stubs

# Load tests and benchmarks (docs/performance.md). make loadtest loads one running server with Locust (headless)
# and writes Locust's CSV and a summary under runs/loadtests/; make bench starts every serving path in turn.
TARGET   ?= webapp
USERS    ?= 4
DURATION ?= 30s
HOST     ?=
.PHONY: loadtest bench microbench soak
loadtest: $(STAMP) $(if $(filter grpc,$(TARGET)),grpc-stubs)  ## Locust vs a running server: make loadtest TARGET=webapp|baseline|torchserve|grpc USERS=4 DURATION=30s [HOST=url]
	$(BIN)/python -m loadtests.run --target $(TARGET) --users $(USERS) --duration $(DURATION) $(if $(HOST),--host $(HOST)) $(ARGS)

bench: $(STAMP)  ## every serving path side by side (baseline, TorchServe REST+gRPC, web app fp32/int8), ~5 min [ARGS="--duration 60s"]
	$(BIN)/python -m loadtests.bench $(ARGS)

soak: $(STAMP)  ## the web app under a mix of photos and the tests' hostile files (loopback, ~3 min) [ARGS="--duration 10m"]
	$(BIN)/python tests/corpus.py runs/bench/odd-files
	$(BIN)/python -m loadtests.soak --odd-files runs/bench/odd-files $(ARGS)

microbench: $(STAMP)  ## bare-model images/s at batch 1/8/32 (eager, ONNX fp32, int8), share of FLOP peak, JPEG decode cost
	$(BIN)/python -m loadtests.microbench $(ARGS)

# The GPU path (docs/performance.md, "On a GPU"). bench-gpu and test-gpu run loadtests/gpu.sh, which a GPU machine
# without make runs itself: it uses GPU_PYTHON (.venv's when there is one, else python3) and installs nothing from
# the network; what that Python lacks for the scan and handler sections it takes from the wheels brought along in
# GPU_WHEELS (.whl/), which gpu-wheels downloads on a machine with a registry, for GPU_WHEEL_PYTHON. test-gpu needs
# pytest there (the lent machines have it).
GPU_WHEELS       ?= .whl
GPU_WHEEL_PYTHON ?= 3.12
GPU_WHEEL_NEEDS  := pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
                    typing-inspection==0.4.5 annotated-types==0.8.0 defusedxml==0.7.1
export GPU_PYTHON GPU_WHEELS GPU_SITE
.PHONY: bench-gpu test-gpu gpu-wheels
bench-gpu:  ## on a GPU machine: model (fp32/bf16/compiled), nvJPEG vs CPU decode, detector-scan --device cuda, handler; <= 5 min [ARGS=--quick]
	bash loadtests/gpu.sh bench $(ARGS)

test-gpu:  ## on a GPU machine: the CUDA variants of tests/test_gpu.py (they skip where torch sees no GPU) [ARGS=...]
	bash loadtests/gpu.sh test $(ARGS)

gpu-wheels: $(STAMP)  ## wheels of what a GPU machine's PyTorch image lacks for make bench-gpu, into GPU_WHEELS (.whl/)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
		--python-version $(GPU_WHEEL_PYTHON) --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(GPU_WHEELS) $(GPU_WHEEL_NEEDS)

# Container images (docker/README.md): the model is built here first, then copied in.
.PHONY: docker-web docker-torchserve
docker-web: export  ## image of the web app on ONNX Runtime (no torch, no Java): real-vs-ai-web
	docker build -f docker/web.Dockerfile -t real-vs-ai-web .

docker-torchserve: archive  ## image of TorchServe with model_store/detector.mar: real-vs-ai-torchserve
	docker build -f docker/torchserve.Dockerfile -t real-vs-ai-torchserve .

# The page tests drive Debian's Chromium (never a downloaded browser).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; \
	else echo "error: the page tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi

test: $(STAMP) $(CHROMIUM) grpc-stubs  ## run the test suite
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:  ## remove build outputs (keeps .venv and runs/)
	rm -rf build dist *.egg-info .pytest_cache model_store/*.mar
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
