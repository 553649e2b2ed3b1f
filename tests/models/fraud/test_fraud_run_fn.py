"""run_fn on a real Transform output: exports a SavedModel whose signatures agree on the same rows."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from fraud_helpers import LABEL, LENGTH, TransformRun, custom_config, serialize
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx_bsl.public import tfxio

from models.common.training_record import RECORD_FILE
from models.fraud.model import run_fn
from models.fraud.signatures import EXAMPLES_SIGNATURE, OUTPUT_KEY, RAW_SIGNATURE, TRANSFORM_SIGNATURE


def _data_accessor() -> DataAccessor:
    """What the Trainer gives run_fn, reading plain TFRecord files of transformed tf.Examples."""
    def tf_dataset_factory(files: list[str], options: tfxio.TensorFlowDatasetOptions, schema: Any) -> tf.data.Dataset:
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)
    return DataAccessor(tf_dataset_factory=tf_dataset_factory, record_batch_factory=None, data_view_decode_fn=None)


@pytest.fixture(scope="module")
def exported(transform_run: TransformRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fraud_trainer")
    run_fn(FnArgs(train_files=transform_run.train_files, eval_files=transform_run.eval_files,
                  train_steps=20, eval_steps=2, transform_output=transform_run.transform_dir,
                  transform_graph_path=transform_run.transform_dir, data_accessor=_data_accessor(),
                  serving_model_dir=str(root / "Format-Serving"), model_run_dir=str(root / "model_run"),
                  custom_config=custom_config()))
    return root


def _raw_batch(rows: list[dict[str, Any]], specs: dict[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
    """serving_raw's inputs: current columns as [batch], history lists as [batch, length]."""
    batch = {}
    for name in custom_config()["data"]["features"]:
        batch[name] = tf.constant([row[name][0] for row in rows], dtype=specs[name].dtype)
    for name in custom_config()["sequence"]["features"]:
        values = [row[name] if name != "history_count" else row[name][0] for row in rows]
        batch[name] = tf.constant(values, dtype=specs[name].dtype)
    return batch


def test_export_has_three_signatures_and_a_training_record(exported: Path) -> None:
    loaded = tf.saved_model.load(str(exported / "Format-Serving"))
    assert {EXAMPLES_SIGNATURE, RAW_SIGNATURE, TRANSFORM_SIGNATURE} <= set(loaded.signatures)
    raw_inputs = loaded.signatures[RAW_SIGNATURE].structured_input_signature[1]
    assert raw_inputs["amount"].shape.as_list() == [None]
    assert raw_inputs["history_amount"].shape.as_list() == [None, LENGTH]
    assert raw_inputs["history_count"].shape.as_list() == [None]
    assert "card_id" not in raw_inputs and LABEL not in raw_inputs
    record = json.loads((exported / "model_run" / RECORD_FILE).read_text())
    assert record["seed"] == 7 and record["epochs"] == 2 and record["steps"] == 20 and record["dp"] is False


def test_both_serving_signatures_give_the_same_probabilities(exported: Path, transform_run: TransformRun) -> None:
    rows = transform_run.eval_rows[:16]
    loaded = tf.saved_model.load(str(exported / "Format-Serving"))
    from_examples = loaded.signatures[EXAMPLES_SIGNATURE](
        examples=tf.constant([serialize(row, with_label=False) for row in rows]))[OUTPUT_KEY].numpy()
    raw = loaded.signatures[RAW_SIGNATURE]
    from_raw = raw(**_raw_batch(rows, raw.structured_input_signature[1]))[OUTPUT_KEY].numpy()
    assert from_examples.shape == (16, 1)
    assert np.all((from_examples > 0) & (from_examples < 1))
    assert from_examples.std() > 0  # the rows are told apart
    np.testing.assert_allclose(from_raw, from_examples, rtol=1e-5, atol=1e-6)


def test_transform_signature_gives_slices_and_label(exported: Path, transform_run: TransformRun) -> None:
    rows = transform_run.eval_rows[:8]
    loaded = tf.saved_model.load(str(exported / "Format-Serving"))
    out = loaded.signatures[TRANSFORM_SIGNATURE](examples=tf.constant([serialize(row) for row in rows]))
    assert out["amount_band"].dtype == tf.int64 and out["amount_band"].shape == (8,)
    assert out[LABEL].numpy().tolist() == [row[LABEL][0] for row in rows]
    assert out["history_amount_xf"].shape == (8, LENGTH)


def test_keras_load_model_works_as_tfma_does(exported: Path, transform_run: TransformRun) -> None:
    """TFMA decides the model type by trying tf.keras.models.load_model on Format-Serving."""
    model = tf.keras.models.load_model(str(exported / "Format-Serving"))
    assert {"history_attention", "fusion"} <= {layer.name for layer in model.layers}
    rows = transform_run.eval_rows[:4]
    served = model.signatures[EXAMPLES_SIGNATURE](
        examples=tf.constant([serialize(row, with_label=False) for row in rows]))[OUTPUT_KEY]
    assert served.shape == (4, 1)


def test_dp_vectorized_run_fn_records_epsilon_and_exports_a_model_tfma_loads(
        transform_run: TransformRun, tmp_path: Path) -> None:
    """The fraud network's layers are outside the fast-clipping registry: DP-SGD runs `vectorized`.

    With the handbook config's options (history relative to the current amount, an in-model ensemble),
    so per-example clipping goes through every member and the export keeps their average."""
    config = custom_config(relative_history=True, ensemble_size=2)
    config["training"]["dp"] = {"enabled": True, "l2_norm_clip": 1.0, "noise_multiplier": 1.1,
                                "clipping": "vectorized", "num_microbatches": None, "delta": 1e-5,
                                "max_epsilon": 1000.0, "accountant": "rdp", "jit_compile": True}
    fn_args = FnArgs(train_files=transform_run.train_files, eval_files=transform_run.eval_files,
                     train_steps=6, eval_steps=1, transform_output=transform_run.transform_dir,
                     transform_graph_path=transform_run.transform_dir, data_accessor=_data_accessor(),
                     serving_model_dir=str(tmp_path / "Format-Serving"), model_run_dir=str(tmp_path / "model_run"),
                     custom_config=config)
    fn_args.num_examples = {"train": 160}  # what TFX's Trainer executor sets from the statistics
    run_fn(fn_args)
    record = json.loads((tmp_path / "model_run" / RECORD_FILE).read_text())
    assert record["dp"] is True and record["dp_clipping"] == "vectorized" and record["steps"] == 6
    assert 0 < record["dp_epsilon"] < 1000.0
    model = tf.keras.models.load_model(str(tmp_path / "Format-Serving"))
    assert {"relative_history_amount_0", "history_lstm_1", "probability"} <= {layer.name for layer in model.layers}
    rows = transform_run.eval_rows[:4]
    served = model.signatures[EXAMPLES_SIGNATURE](
        examples=tf.constant([serialize(row, with_label=False) for row in rows]))[OUTPUT_KEY].numpy()
    assert served.shape == (4, 1) and np.all(np.isfinite(served))


def test_same_seed_and_data_give_bit_identical_weights_through_the_trainer_input_pipeline(
        exported: Path, transform_run: TransformRun, tmp_path: Path) -> None:
    """A second run_fn with the fixture's seed and data: the cached, reshuffled input and training agree bit for bit."""
    run_fn(FnArgs(train_files=transform_run.train_files, eval_files=transform_run.eval_files,
                  train_steps=20, eval_steps=2, transform_output=transform_run.transform_dir,
                  transform_graph_path=transform_run.transform_dir, data_accessor=_data_accessor(),
                  serving_model_dir=str(tmp_path / "Format-Serving"), model_run_dir=str(tmp_path / "model_run"),
                  custom_config=custom_config()))
    first = tf.keras.models.load_model(str(exported / "Format-Serving")).get_weights()
    second = tf.keras.models.load_model(str(tmp_path / "Format-Serving")).get_weights()
    assert len(first) == len(second) > 10
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
