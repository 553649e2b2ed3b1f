"""Baseline: the naive server people write first (Flask dev server, one SavedModel call per request)."""
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
from flask import Flask, jsonify, request

model = tf.saved_model.load(sys.argv[1])
signature = model.signatures["predict_raw"]
app = Flask(__name__)


@app.post("/v1/models/<name>:predict")
def predict(name: str):  # type: ignore[no-untyped-def]
    rows = request.get_json()["instances"]
    inputs = {key: tf.constant(np.array([row[key] for row in rows], np.float32)) for key in rows[0]}
    outputs = signature(**inputs)
    return jsonify({"predictions": outputs["probabilities"].numpy().tolist()})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
