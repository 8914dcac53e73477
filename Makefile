# VisionDock developer commands. Each target installs what it needs into .venv first.
#   make demo    the end-to-end loop on embedded storage (services, train, promote, predict)
#   make test    the whole test suite, Azure backends included (needs node + npm)
#   make test-fast  unit and in-process API tests only: no service processes, training, emulators, API fuzzing,
#                   deployment scans or replays
#   make bench   benchmarks; they print ratios against a baseline measured in the same run
#   make soak    200 clients for a minute, a registry outage, SIGKILL and SIGTERM under load
#   make lint    ruff
#   make check   ruff, mypy (strict: [tool.mypy] in pyproject.toml), the layer contracts (lint-imports), then the
#                page code: Biome (lint and format) and its unit tests (node --test tests/js)
#   make locks   the container images' pinned requirements (docker/requirements/*.txt)
#   make check-images  each GPU image ships the CUDA its locked wheels link (downloads them once)
#   make cluster-smoke the first-install checks of docs/verify-on-a-cluster.md on the current kube context

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EMULATORS := tests/emulators/node_modules/.installed
# Debian's Chromium for the tests that look at pages (driven by the playwright Python package).
BROWSER := $(VENV)/.chromium
# axe-core, injected into those pages to check accessibility, and Biome, which lints and format-checks
# the pages' JavaScript (biome.json).
AXE := tests/browser/node_modules/.installed
BIOME := tests/browser/node_modules/.bin/biome
EXTRAS := scoring,trainer,azure,kubernetes,dev

.PHONY: install demo test test-fast lint check check-images cluster-smoke soak bench bench-train bench-scoring bench-labeling bench-import bench-options bench-tiny bench-variants bench-models bench-throughput bench-data-checks bench-int8 bench-detection locks clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"VisionDock needs Python 3.11, found {sys.version.split()[0]}: set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $@

# checkov (the manifest scanner the chart tests run) pins packaging<24, which pytest refuses: it gets
# a virtual environment of its own.
CHECKOV_VERSION := 3.3.30
CHECKOV := .tools/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/pip install --quiet --disable-pip-version-check 'checkov==$(CHECKOV_VERSION)'

$(EMULATORS): tests/emulators/package.json tests/emulators/package-lock.json
	cd tests/emulators && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(BROWSER): $(STAMP)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@touch $@

$(AXE): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/visiondock demo

test: $(STAMP) $(EMULATORS) $(BROWSER) $(AXE) $(CHECKOV)
	$(PY) -m pytest

# The CUDA major each GPU image ships against the one its locked onnxruntime-gpu / torch wheel links,
# read from the wheels themselves (about 800 MB, downloaded once into ~/.cache/visiondock/gpu-wheels, or $$VISIONDOCK_WHEEL_CACHE).
check-images: $(STAMP)
	$(PY) -m tests.deploy.gpu_images

# The checks of docs/verify-on-a-cluster.md against the current kube context. With the services' URLs and an
# admin key it also trains through the labeling app and restarts scoring under load:
#   make cluster-smoke SMOKE_ARGS="--annotation-url https://… --scoring-url https://… --api-key $$KEY"
cluster-smoke: $(STAMP)
	$(PY) -m tests.kubernetes.cluster_smoke $(SMOKE_ARGS)

# The edit loop: in-process tests only (see the markers in pyproject.toml), on every core.
FAST_TESTS := not e2e and not training and not azure and not fuzz and not chart and not dockerfiles \
	and not kubernetes and not processes
test-fast: $(STAMP)
	$(PY) -m pytest -n auto -m "$(FAST_TESTS)"

lint: $(STAMP)
	$(PY) -m ruff check .

check: $(STAMP) $(AXE)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(BIOME) check .
	node --test tests/js/

bench: bench-scoring bench-train bench-labeling bench-import bench-options bench-tiny bench-variants bench-models bench-throughput bench-data-checks bench-int8 bench-detection

bench-scoring: $(STAMP)
	$(PY) -m bench.scoring

# Soak and fault runs (about 6 minutes): figures, not pass/fail.
soak: $(STAMP)
	$(PY) -m bench.soak

bench-train: $(STAMP)
	$(PY) -m bench.training

bench-labeling: $(STAMP) $(BROWSER)
	$(PY) -m bench.labeling

# Import speed on embedded storage and on the Azure emulators (needs node + npm for the latter).
bench-import: $(STAMP) $(EMULATORS)
	$(PY) -m bench.import_speed

# Each image's requirements, compiled by uv from pyproject.toml's extras for Linux x86-64 and Python
# 3.11, every package pinned with its hashes. The CPU trainer's torch is PyTorch's CPU build:
# TORCH_CPU_WHEELS says where its wheels are listed (that index page, or a folder holding the wheel).
TORCH_CPU_WHEELS ?= https://download.pytorch.org/whl/cpu/torch/
LOCK = cd docker/requirements && ../../$(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --custom-compile-command 'make locks'
locks: $(STAMP)
	$(LOCK) build.in -o build.txt
	$(LOCK) ../../pyproject.toml --extra azure --extra kubernetes -o api.txt
	$(LOCK) ../../pyproject.toml --extra scoring --extra azure -o scoring.txt
	$(LOCK) ../../pyproject.toml --extra gpu --extra azure -o scoring-gpu.txt
	$(LOCK) ../../pyproject.toml --extra trainer --find-links $(TORCH_CPU_WHEELS) --index-strategy unsafe-best-match \
		-o trainer.txt
	$(LOCK) ../../pyproject.toml --extra trainer -o trainer-gpu.txt

bench-options: $(STAMP)
	$(PY) -m bench.classification_options

bench-tiny: $(STAMP)
	$(PY) -m bench.training_tiny

# Today's default detection (advanced mode) against quick mode on the grocery folds: one table.
bench-detection: $(STAMP)
	$(PY) -m bench.training_detection --compare

# Model candidates by repeated cross-validation of the shared sets: one table per data set.
bench-models: $(STAMP)
	$(PY) -m bench.models

# Feature-extraction throughput per backbone and input size, as ratios to Lite0 at 224 px in the same run.
bench-throughput: $(STAMP)
	$(PY) -m bench.feature_throughput

# Near-duplicate and label-error checks on the shared sets with planted duplicates and flipped labels.
bench-data-checks: $(STAMP)
	$(PY) -m bench.data_checks

# fp32 against INT8 on the shared sets' cross-validation folds, for each calibration choice.
bench-int8: $(STAMP)
	$(PY) -m bench.int8_folds

bench-variants: $(STAMP)
	$(PY) -m bench.scoring_variants

clean:
	rm -rf $(VENV) .tools tests/emulators/node_modules tests/browser/node_modules .pytest_cache .ruff_cache
