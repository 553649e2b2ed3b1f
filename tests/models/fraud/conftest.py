"""Fraud-model test fixtures: one real Transform run (tft_beam on the in-process FnApiRunner, no Prism
download) over tiny synthetic transactions shaped like the AnonymizingExampleGen's output."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fraud_helpers import TransformRun, custom_config, raw_feature_spec, raw_rows


@pytest.fixture(scope="session")
def transform_run(tmp_path_factory: pytest.TempPathFactory) -> TransformRun:
    """Analyze the train rows, transform train and eval rows, write the graph and transformed examples."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam

    from models.fraud.preprocessing import preprocessing_fn

    root: Path = tmp_path_factory.mktemp("fraud_transform")
    train_rows, eval_rows = raw_rows(160, seed=1), raw_rows(64, seed=2)
    metadata = tft.DatasetMetadata.from_feature_spec(raw_feature_spec())
    config = custom_config()
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=str(root / "tmp")):
        train = pipeline | "Train" >> beam.Create(train_rows)
        evaluation = pipeline | "Eval" >> beam.Create(eval_rows)
        (train_out, train_meta), transform_fn = (train, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, config))
        eval_out, _ = ((evaluation, metadata), transform_fn) | tft_beam.TransformDataset()
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform"))
        _ = metadata | tft_beam.WriteMetadata(  # the raw schema, as the Transform component writes it
            str(root / "transform" / tft.TFTransformOutput.RAW_METADATA_DIR), pipeline)
        coder = tft.coders.ExampleProtoCoder(train_meta.schema)
        for name, data in (("train", train_out), ("eval", eval_out)):
            _ = (data | f"Encode{name}" >> beam.Map(coder.encode)
                 | f"Write{name}" >> beam.io.WriteToTFRecord(str(root / name / "part"), file_name_suffix=".tfrecord"))
    return TransformRun(str(root / "transform"), [str(p) for p in (root / "train").glob("*.tfrecord")],
                        [str(p) for p in (root / "eval").glob("*.tfrecord")], train_rows, eval_rows)
