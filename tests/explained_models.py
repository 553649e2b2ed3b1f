"""A real breast-cancer model with its explain signature, for the tests of the explanation and review paths.

One Transform run (tft_beam on the in-process FnApiRunner) over scikit-learn's breast-cancer rows, then
the tabular package's own run_fn, so the SavedModel is exactly what the Trainer exports: serving_default,
serving_raw, explain and the facts file with the decision threshold.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np

from pipeline.datasets.breast_cancer import column_name

LABEL = "malignant"
THRESHOLD = 0.3
REASONS = {"worst_radius": {"raises": "the largest cell radius is above what benign samples show",
                            "lowers": "the largest cell radius is small, as in benign samples"}}


@dataclass(frozen=True)
class ExplainedModel:
    export_dir: Path  # <base_path>/<version>
    features: list[str]
    rows: list[dict[str, float]]  # raw eval rows (features only)
    labels: list[int]


def breast_cancer_rows() -> tuple[list[str], list[dict[str, Any]]]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [column_name(name) for name in data.feature_names]
    rows = [{**{name: [float(v)] for name, v in zip(names, values, strict=True)}, LABEL: [int(1 - target)]}
            for values, target in zip(data.data, data.target, strict=True)]
    return names, rows


def custom_config(features: list[str], train_steps: int) -> dict[str, Any]:
    return {"data": {"label": LABEL, "features": dict.fromkeys(features, "float")},
            "model": {"hidden_units": [16, 8], "dropout": 0.0, "learning_rate": 0.01, "batch_size": 32,
                      "explain": {"steps": 32, "top_k": 3, "reasons": REASONS}},
            "training": {"epochs": 1, "seed": 3, "histogram_freq": 0}, "decision_threshold": THRESHOLD}


def export_breast_cancer_model(root: Path, base_path: Path, version: int = 1, train_steps: int = 60) -> ExplainedModel:
    """Transform + run_fn into ``root``; the SavedModel is copied to ``<base_path>/<version>``."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
    from tfx_bsl.public import tfxio

    from models.tabular.model import run_fn
    from models.tabular.preprocessing import preprocessing_fn

    features, rows = breast_cancer_rows()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rows))
    train_rows = [rows[i] for i in order[:450]]
    eval_rows = [rows[i] for i in order[450:]]
    spec = {name: tf.io.FixedLenFeature([1], tf.float32) for name in features}
    spec[LABEL] = tf.io.FixedLenFeature([1], tf.int64)
    config = custom_config(features, train_steps)
    metadata = tft.DatasetMetadata.from_feature_spec(spec)
    transform_dir = root / "transform"
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=str(root / "tmp")):
        train = pipeline | "Train" >> beam.Create(train_rows)
        (train_out, train_meta), transform_fn = (train, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, config))
        _ = transform_fn | tft_beam.WriteTransformFn(str(transform_dir))
        _ = metadata | tft_beam.WriteMetadata(str(transform_dir / tft.TFTransformOutput.RAW_METADATA_DIR), pipeline)
        coder = tft.coders.ExampleProtoCoder(train_meta.schema)
        _ = (train_out | beam.Map(coder.encode)
             | beam.io.WriteToTFRecord(str(root / "train" / "part"), file_name_suffix=".tfrecord"))
    train_files = [str(p) for p in (root / "train").glob("*.tfrecord")]

    def factory(files: list[str], options: tfxio.TensorFlowDatasetOptions, schema: Any) -> tf.data.Dataset:
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)

    run_fn(FnArgs(train_files=train_files, eval_files=train_files, train_steps=train_steps, eval_steps=2,
                  transform_output=str(transform_dir), transform_graph_path=str(transform_dir),
                  data_accessor=DataAccessor(tf_dataset_factory=factory, record_batch_factory=None,
                                             data_view_decode_fn=None),
                  serving_model_dir=str(root / "Format-Serving"), model_run_dir=str(root / "model_run"),
                  custom_config=config))
    export_dir = base_path / str(version)
    shutil.copytree(root / "Format-Serving", export_dir)
    return ExplainedModel(export_dir, features, [{name: row[name][0] for name in features} for row in eval_rows],
                          [row[LABEL][0] for row in eval_rows])


_SHARED: list[ExplainedModel] = []


def shared_breast_cancer_model(base_path: Path, version: int = 1) -> ExplainedModel:
    """The model trained once per test process (about half a minute), copied to ``<base_path>/<version>``."""
    if not _SHARED:
        root = Path(tempfile.mkdtemp(prefix="esteira-explained-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _SHARED.append(export_breast_cancer_model(root / "train", root / "serving"))
    model = _SHARED[0]
    export_dir = base_path / str(version)
    shutil.copytree(model.export_dir, export_dir)
    return ExplainedModel(export_dir, model.features, model.rows, model.labels)
