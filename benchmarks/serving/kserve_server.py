"""KServe's ModelServer serving the benchmark's SavedModel: the server users would pick instead of Esteira.

Runs inside the benchmark's own KServe environment (see kserve_env.py), not the project's, so it
imports nothing from Esteira. A custom ``kserve.Model`` calls the same ``predict_raw`` signature with
the same tensors as the Flask baseline; KServe's v1 protocol path ``/v1/models/<name>:predict`` takes
the TF-Serving-style ``{"instances": [...]}`` bodies the other servers get.

    python kserve_server.py --model_dir DIR --http_port PORT --model_name demo [KServe's own flags]
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kserve
import numpy as np
import tensorflow as tf


class SavedModelSignature(kserve.Model):
    """One SavedModel signature behind KServe's v1 predict: instances in, predictions out."""

    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.signature = None

    def load(self) -> bool:
        self.signature = tf.saved_model.load(self.model_dir).signatures["predict_raw"]
        self.ready = True
        return self.ready

    def predict(self, payload: dict, headers: dict[str, str] | None = None) -> dict:
        rows = payload["instances"]
        inputs = {key: tf.constant(np.array([row[key] for row in rows], np.float32)) for key in rows[0]}
        outputs = self.signature(**inputs)
        return {"predictions": outputs["probabilities"].numpy().tolist()}


def main() -> None:
    """KServe's documented custom-model entry point: its own flags (ports, workers, logging) plus ours."""
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True, help="the SavedModel version folder")
    args, _ = parser.parse_known_args()
    model = SavedModelSignature(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
