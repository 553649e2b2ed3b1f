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

.PHONY: install lock data demo demo-fraud test test-fast tensorboard mlflow-ui serve-demo stack stack-down dashboard images image-serving image-pipeline compose-up compose-down bench-pipeline-image bench-pipeline bench-serving bench-training clean help

help:
	@echo "make demo            install if needed, write the data, run the pipeline, print what happened"
	@echo "make test            install if needed, run every test (unit + end-to-end)"
	@echo "make test-fast       unit tests only (no whole-pipeline runs)"
	@echo "make install         create .venv from requirements.lock (idempotent)"
	@echo "make lock            re-resolve requirements.lock from pyproject.toml"
	@echo "make demo-fraud      simulate card transactions and run the fraud pipeline (privacy at ingestion)"
	@echo "make mlflow-ui       open the local MLflow store of CONFIG's runs on http://127.0.0.1:5000 (MLFLOW_UI_PORT)"
	@echo "make tensorboard     serve the Trainer's TensorBoard logs on http://127.0.0.1:6006"
	@echo "make serve-demo      serve the demo's pushed model on 127.0.0.1 (REST :8501, gRPC :8500)"
	@echo "make stack           demo model server, Prometheus, Alertmanager and MLflow on 127.0.0.1 (prints URLs)"
	@echo "make stack-down      stop exactly what make stack started"
	@echo "make dashboard       render the dashboard from the stack's Prometheus to outputs/dashboard/index.html"
	@echo "make images          build the serving and pipeline images with Podman (local Debian base, offline wheels)"
	@echo "make image-serving   build localhost/esteira-serving:dev only"
	@echo "make image-pipeline  build localhost/esteira-pipeline:dev only"
	@echo "make compose-up      the model server of docker/compose.yaml on 127.0.0.1 (serves the demo's model)"
	@echo "make compose-down    stop and remove what compose-up started"
	@echo "make bench-pipeline-image  esteira run on breast-cancer inside the pipeline image; records time and size"
	@echo "make bench-pipeline  per-component times, LocalDagRunner vs BeamDagRunner"
	@echo "make bench-serving   Esteira vs KServe, Flask and the in-process call (needs: apt-get install wrk nghttp2-client)"
	@echo "make bench-training  examples/s with and without DP-SGD, 1 vs 2 replicas"
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

# The fraud demo's pseudonymization key: generated once, kept out of the repository (outputs/ is ignored).
FRAUD_KEY := outputs/fraud/pseudonym.key
FRAUD_SIZE ?= --transactions 120000 --days 4 --seed 7

$(FRAUD_KEY):
	@mkdir -p $(dir $@) && umask 077 && $(PY) -c 'import secrets; print(secrets.token_hex(32))' > $@

data/fraud/manifest.json: | install
	$(ESTEIRA) data fraud $(FRAUD_SIZE) --out data/fraud

demo-fraud: install data/fraud/manifest.json $(FRAUD_KEY)
	@start=$$(date +%s); \
	ESTEIRA_PSEUDONYM_KEY=$$(cat $(FRAUD_KEY)) $(ESTEIRA) run --config configs/fraud.yaml \
	  2> >(grep --line-buffered -E '^esteira' >&2); rc=$$?; \
	echo "demo-fraud wall time: $$(( $$(date +%s) - start )) s"; exit $$rc

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
test: install
	@$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

test-fast: install
	@$(PY) -m pytest -m "not e2e"; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1 --port 6006

# The embedded store the MLflow logger writes when no tracking server is configured.
MLFLOW_UI_PORT ?= 5000
mlflow-ui: install
	@store=$$($(PY) -c 'import sys; from pipeline.config import load_config; from tracking.store import LOCAL_FOLDER, local_target; print(local_target(load_config(sys.argv[1]).pipeline.root / LOCAL_FOLDER).uri)' $(CONFIG)) && \
	echo "MLflow UI for $$store on http://127.0.0.1:$(MLFLOW_UI_PORT)" && \
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri $$store --host 127.0.0.1 --port $(MLFLOW_UI_PORT) --workers 1

serve-demo: install
	$(ESTEIRA) serve --port=8500 --rest_api_port=8501 --host=127.0.0.1 \
	  --model_name=breast_cancer --model_base_path=$(CURDIR)/outputs/breast_cancer/serving \
	  --monitoring_config_file=configs/serving/monitoring.config

# Needs Debian's prometheus and prometheus-alertmanager. State, logs and pid files in outputs/stack.
stack: install
	$(PY) -m observability.stack up --state-dir outputs/stack

stack-down:
	$(PY) -m observability.stack down --state-dir outputs/stack

dashboard: install
	$(ESTEIRA) dashboard --prometheus http://127.0.0.1:9090 --out outputs/dashboard --range 1h

# Images (Podman; .ci/run installs podman, mmdebstrap and podman-compose). State in build/podman.
PODMAN_ENV := CONTAINERS_CONF=$(CURDIR)/build/podman/containers.conf
COMPOSE := $(PODMAN_ENV) podman-compose -p esteira -f docker/compose.yaml

image-serving: install
	$(PY) -m deploy.images build serving

image-pipeline: install
	$(PY) -m deploy.images build pipeline

images: image-serving image-pipeline

compose-up: image-serving
	MODEL_DIR=$(CURDIR)/outputs/breast_cancer/serving $(COMPOSE) up -d model-server
	@echo "model server: REST http://127.0.0.1:8501/v1/models/breast_cancer, gRPC 127.0.0.1:8500"

# Keeps the named volumes (MLflow's store); `podman-compose -p esteira -f docker/compose.yaml down --volumes` drops them.
compose-down:
	$(COMPOSE) down

bench-pipeline-image: image-pipeline
	$(PY) benchmarks/deploy/pipeline_image.py --out benchmarks/deploy/results

bench-pipeline: install
	$(PY) benchmarks/pipeline/runners.py

bench-serving: install
	$(PY) benchmarks/serving/bench_serving.py --seconds 4 --rounds 3

bench-training: install
	$(PY) benchmarks/training/bench_training.py --steps 30 --rounds 3

clean:
	rm -rf data outputs
