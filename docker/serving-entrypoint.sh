#!/bin/sh
# TF Serving's image contract: gRPC on 8500, REST on 8501, the model ${MODEL_NAME} under
# ${MODEL_BASE_PATH}; arguments are appended, so any TF Serving flag (e.g. --model_config_file) is taken.
set -e
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"  # a command, not flags: run it (e.g. `podman run IMAGE esteira predict ...`)
fi
exec esteira serve --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"
