# Esteira: `make demo` runs the breast-cancer pipeline on embedded defaults; `make test` passes the tests.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
ESTEIRA := $(VENV)/bin/esteira
CONFIG ?= configs/breast_cancer.yaml
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: install lock data demo test test-fast bench-pipeline clean help

help:
	@echo "make demo            install if needed, write the data, run the pipeline, print what happened"
	@echo "make test            install if needed, run every test (unit + end-to-end)"
	@echo "make test-fast       unit tests only (no whole-pipeline runs)"
	@echo "make install         create .venv from requirements.lock (idempotent)"
	@echo "make lock            re-resolve requirements.lock from pyproject.toml"
	@echo "make bench-pipeline  per-component times, LocalDagRunner vs BeamDagRunner"
	@echo "make clean           remove generated data and pipeline outputs"

install:
	@scripts/install.sh

lock:
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_39 --generate-hashes --no-header -o requirements.lock

data/breast_cancer/breast_cancer.csv: | install
	$(ESTEIRA) data breast-cancer --out data/breast_cancer

data: data/breast_cancer/breast_cancer.csv

# TFX, Beam and TensorFlow log at length on stderr; the demo keeps only Esteira's own lines.
demo: install data
	@start=$$(date +%s); \
	$(ESTEIRA) run --config $(CONFIG) 2> >(grep --line-buffered -E '^esteira' >&2); rc=$$?; \
	echo "demo wall time: $$(( $$(date +%s) - start )) s (logs: rerun with \`$(ESTEIRA) run --config $(CONFIG)\`)"; \
	exit $$rc

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: install
	@$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

test-fast: install
	@$(PY) -m pytest -m "not e2e"; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

bench-pipeline: install
	$(PY) benchmarks/pipeline/runners.py

clean:
	rm -rf data outputs
