# Esteira's model server: TF Serving's flags and ports (gRPC 8500, REST 8501), non-root, a healthcheck.
# Production builds on the public Python base; these machines pass a base made from Debian's
# packages (`esteira images base`). Dependencies install offline and hash-checked from a
# wheelhouse built from requirements.lock (`esteira images wheelhouse serving`): only what the
# server imports (TensorFlow, gRPC, uvicorn...), no TFX, Beam or MLflow.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2 \
    PATH=/opt/esteira/bin:$PATH \
    MODEL_NAME=model MODEL_BASE_PATH=/models

# The locked closure in its own layer (rebuilt when the lock changes). The wheels and the installer
# are mounted, not copied: neither stays in the image, which has no pip either.
COPY build/wheelhouse/serving/requirements.txt /opt/esteira-requirements.txt
RUN --mount=type=bind,source=build/wheelhouse/serving,target=/wheels \
    UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1 UV_LINK_MODE=copy \
    /wheels/tools/uv venv --quiet --python "$(command -v python3.11)" /opt/esteira \
 && UV_NO_CACHE=1 UV_LINK_MODE=copy /wheels/tools/uv pip install --quiet --python /opt/esteira/bin/python \
      --no-index --find-links /wheels --no-deps --require-hashes --compile-bytecode -r /opt/esteira-requirements.txt

# Esteira itself: a small layer, rebuilt when the code changes (the COPY carries the change into the
# cache key). The import proves the closure is whole.
COPY build/wheelhouse/serving/project/ /tmp/esteira-wheel/
RUN --mount=type=bind,source=build/wheelhouse/serving/tools,target=/tools \
    UV_NO_CACHE=1 UV_LINK_MODE=copy /tools/uv pip install --quiet --python /opt/esteira/bin/python \
      --no-index --no-deps --compile-bytecode /tmp/esteira-wheel/*.whl \
 && rm -rf /tmp/esteira-wheel \
 && python -c "import serving.server, cli.main, cli.serve" \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin esteira 2>/dev/null \
 && mkdir -p /models

COPY docker/serving-entrypoint.sh /usr/local/bin/tf_serving_entrypoint.sh
COPY docker/serving-healthcheck.py /usr/local/bin/esteira-healthcheck

USER 10001
VOLUME ["/models"]
EXPOSE 8500 8501
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/usr/local/bin/esteira-healthcheck"]
ENTRYPOINT ["/usr/local/bin/tf_serving_entrypoint.sh"]
