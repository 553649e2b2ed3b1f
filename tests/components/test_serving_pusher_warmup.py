"""The Pusher writes TF Serving's warm-up records into every pushed version: PredictionLog records built from
eval rows for each serving signature, read back by TensorFlow and replayed by our server while it loads."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tfx.types import standard_artifacts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serving"))

from serving_helpers import metric_value, start_server

from components.serving_pusher.executor import ServingPusherExecutor
from components.serving_pusher.warmup import WARMUP_PATH
from serving.client import RestClient
from serving.demo_model import FEATURES, export_demo_model, make_examples, raw_row

EVAL_ROWS = 8
# the demo model's serving signatures and the record kind each gets (one record per batch size: 1 and 8 rows)
EXPECTED = {"classify": "classify_log", "predict_raw": "predict_log", "regress": "regress_log",
            "serving_default": "predict_log"}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One Pusher execution on the demo SavedModel with an eval split of 8 tf.Examples."""
    root = tmp_path_factory.mktemp("pusher")
    model = standard_artifacts.Model()
    model.uri = str(root / "model")
    shutil.move(str(export_demo_model(root / "export", 1, reference_stats=False)), root / "model" / "Format-Serving")
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = json.dumps(["train", "eval"])
    (root / "examples" / "Split-eval").mkdir(parents=True)
    with tf.io.TFRecordWriter(str(root / "examples" / "Split-eval" / "data.gz"), options="GZIP") as writer:
        for row in make_examples(EVAL_ROWS + 4, seed=3):
            writer.write(row)
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(root / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    artifact = standard_artifacts.PushedModel()
    artifact.uri = str(root / "pushed")
    base = root / "serving" / "demo"
    ServingPusherExecutor().Do(
        {"model": [model], "model_blessing": [blessing], "examples": [examples]},
        {"pushed_model": [artifact]},
        {"push_destination": json.dumps({"filesystem": {"base_directory": str(base)}}), "warmup_rows": EVAL_ROWS})
    return {"base": base, "version": Path(artifact.get_string_custom_property("pushed_destination")),
            "artifact": artifact}


def test_the_pushed_version_carries_records_for_every_signature_that_tensorflow_reads(pushed: dict) -> None:
    path = pushed["version"] / WARMUP_PATH
    records = tf.data.TFRecordDataset(str(path))
    logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in records]
    kinds: dict[str, list[tuple[str, int]]] = {}
    for log in logs:
        kind = log.WhichOneof("log_type")
        request = getattr(log, kind).request
        if kind == "predict_log":
            rows = next(iter(request.inputs.values())).tensor_shape.dim[0].size
        else:
            rows = len(request.input.example_list.examples)
        kinds.setdefault(request.model_spec.signature_name, []).append((kind, rows))
    assert kinds == {key: [(kind, 1), (kind, EVAL_ROWS)] for key, kind in EXPECTED.items()}
    raw = next(log.predict_log.request for log in logs
               if log.predict_log.request.model_spec.signature_name == "predict_raw")
    assert sorted(raw.inputs) == sorted(FEATURES)  # the eval rows' features, by name
    assert pushed["artifact"].get_int_custom_property("warmup_records") == len(logs) == 2 * len(EXPECTED)


def test_our_server_replays_the_records_while_the_version_loads(pushed: dict, tmp_path: Path) -> None:
    server = start_server(tmp_path, f"--model_base_path={pushed['base']}", "--model_name=demo",
                          "--file_system_poll_wait_seconds=0")
    try:
        with RestClient(server.rest_url) as client:
            assert client.status("demo")["model_version_status"][0]["state"] == "AVAILABLE"
            assert len(client.predict("demo", instances=[raw_row(1)], signature="predict_raw")) == 1
            metrics = client.http.get("/monitoring/prometheus/metrics").text
    finally:
        server.stop()
    read = metric_value(metrics, ":tensorflow:serving:model_warmup_records_read", model_path=str(pushed["version"]),
                        status="OK")
    assert read == 2 * len(EXPECTED)
