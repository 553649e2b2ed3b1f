"""--prefer_tflite_model: a version's model.tflite answers Predict over REST and gRPC under the
SavedModel's signature names, within the measured tolerance; a corrupt one fails alone."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "optimization"))

from serving_helpers import start_server
from small_model import export_small_model

from serving.client import GrpcClient, RestClient
from serving.config import single_model_config
from serving.core.manager import ModelManager
from serving.observability.metrics import Registry
from serving.servables.saved_model import SavedModelServable
from serving.servables.tflite import TfLiteServable

NAME, SIGNATURE, OUTPUT = "small", "serving_raw", "probability"


@pytest.fixture(scope="module")
def tflite_version(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """<base>/1: the small SavedModel plus its dynamic-int8 model.tflite; the eval rows; the measured tolerance."""
    import tensorflow as tf

    from optimization import measure
    from optimization.converter import convert
    from optimization.examples import input_specs, read_rows
    from optimization.settings import Variant

    root = tmp_path_factory.mktemp("tflite")
    small = export_small_model(root / "export")
    base = root / NAME
    shutil.copytree(small.path, base / "1")
    conversion = convert(small.path, SIGNATURE, Variant.DYNAMIC_INT8)
    (base / "1" / "model.tflite").write_bytes(conversion.model)
    function = tf.saved_model.load(str(small.path)).signatures[SIGNATURE]
    rows, _ = read_rows(small.eval_files, input_specs(function), limit=40)
    saved = measure.saved_model_predict(function, OUTPUT)(rows)
    lite = measure.tflite_predict(conversion.model, SIGNATURE, OUTPUT)(rows)
    tolerance = float(np.abs(saved - lite).max()) + 1e-6  # what the optimizer's table reports for this variant
    return {"base": base, "rows": rows, "saved": saved, "lite": lite, "tolerance": tolerance}


@pytest.fixture(scope="module")
def tflite_server(tflite_version: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    server = start_server(tmp_path_factory.mktemp("tflite-server"), f"--model_base_path={tflite_version['base']}",
                          f"--model_name={NAME}", "--prefer_tflite_model=true", "--file_system_poll_wait_seconds=0")
    yield server
    server.stop()


def test_rest_predict_answers_from_the_tflite_file_within_the_measured_tolerance(tflite_version, tflite_server) -> None:
    rows = tflite_version["rows"]
    inputs = {name: [v.decode() if isinstance(v, bytes) else float(v) for v in values] for name, values in rows.items()}
    with RestClient(tflite_server.rest_url) as client:
        answer = np.asarray(client.predict(NAME, inputs=inputs, signature=SIGNATURE), np.float32)
    assert answer.shape == tflite_version["lite"].shape
    np.testing.assert_allclose(answer, tflite_version["lite"], atol=1e-6)  # the TFLite file answered
    assert np.abs(answer - tflite_version["saved"]).max() <= tflite_version["tolerance"]


def test_grpc_predict_and_metadata_use_the_saved_models_signature_names(tflite_version, tflite_server) -> None:
    with GrpcClient(tflite_server.grpc_target) as client:
        outputs = client.predict(NAME, tflite_version["rows"], signature=SIGNATURE)
        metadata = client.metadata(NAME)
    np.testing.assert_allclose(outputs[OUTPUT], tflite_version["lite"], atol=1e-6)
    assert np.abs(outputs[OUTPUT] - tflite_version["saved"]).max() <= tflite_version["tolerance"]
    text = str(metadata)
    assert SIGNATURE in text and "amount" in text and "kind" in text


def test_corrupt_tflite_fails_its_version_with_a_reason_while_the_previous_serves(tflite_version, tmp_path) -> None:
    base = tmp_path / NAME
    shutil.copytree(tflite_version["base"] / "1", base / "1")
    manager = ModelManager(single_model_config(NAME, str(base)), metrics=Registry(), poll_seconds=0,
                           prefer_tflite_model=True)
    manager.start()
    assert isinstance(manager.resolve(NAME).servable, TfLiteServable)
    shutil.copytree(base / "1", tmp_path / "staging")
    (tmp_path / "staging" / "model.tflite").write_bytes(b"not a flatbuffer")
    (tmp_path / "staging").rename(base / "2")
    manager.poll()
    status = {s.version: s for s in manager.status(NAME).model_version_status}
    assert status[2].state == 50  # END
    assert "Failed to load TFLite model" in status[2].status.error_message
    assert "Replace the version's model.tflite" in status[2].status.error_message
    assert status[1].state == 30 and manager.resolve(NAME).number == 1  # still AVAILABLE and serving
    manager.stop()

    plain = ModelManager(single_model_config(NAME, str(base)), metrics=Registry(), poll_seconds=0)
    plain.start()  # without the flag the same folders serve their SavedModels, version 2 included
    assert manager is not plain and isinstance(plain.resolve(NAME).servable, SavedModelServable)
    assert plain.resolve(NAME).number == 2
    plain.stop()
