# VisionDock developer commands. Each target installs what it needs into .venv first.
#   make demo    the end-to-end loop on embedded storage (services, train, promote, predict)
#   make test    the whole test suite, Azure backends included (needs node + npm)
#   make test-fast  the same without the API fuzzing
#   make bench   benchmarks; they print ratios against a baseline measured in the same run
#   make soak    200 clients for a minute, a registry outage, SIGKILL and SIGTERM under load
#   make lint    ruff

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EMULATORS := tests/emulators/node_modules/.installed
EXTRAS := scoring,trainer,azure,dev

.PHONY: install demo test test-fast lint soak bench bench-train bench-scoring clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"VisionDock needs Python 3.11, found {sys.version.split()[0]}: set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	@touch $@

$(EMULATORS): tests/emulators/package.json tests/emulators/package-lock.json
	cd tests/emulators && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/visiondock demo

test: $(STAMP) $(EMULATORS)
	$(PY) -m pytest

# The edit-test loop: everything but the API fuzzing.
test-fast: $(STAMP) $(EMULATORS)
	$(PY) -m pytest -m "not fuzz"

lint: $(STAMP)
	$(PY) -m ruff check .

bench: bench-scoring bench-train

bench-scoring: $(STAMP)
	$(PY) -m bench.scoring

# Soak and fault runs (about 6 minutes): figures, not pass/fail.
soak: $(STAMP)
	$(PY) -m bench.soak

bench-train: $(STAMP)
	$(PY) -m bench.training

clean:
	rm -rf $(VENV) tests/emulators/node_modules .pytest_cache .ruff_cache
