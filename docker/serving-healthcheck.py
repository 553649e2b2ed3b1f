"""Healthy when TF Serving's model status endpoint (REST) reports a version of ${MODEL_NAME} AVAILABLE."""
import json
import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('REST_API_PORT', '8501')}/v1/models/{os.environ.get('MODEL_NAME', 'model')}"
try:
    with urllib.request.urlopen(url, timeout=3) as response:
        states = [version.get("state") for version in json.load(response).get("model_version_status", [])]
except Exception as error:  # noqa: BLE001 - any failure is "unhealthy", with its reason
    sys.exit(f"unhealthy: {url}: {error}")
if "AVAILABLE" not in states:
    sys.exit(f"unhealthy: {url}: no version AVAILABLE ({states})")
