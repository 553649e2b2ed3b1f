"""The ModelOptimizer's executor on real TFX artifacts, and the Pusher placing its gated model.tflite."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "optimization"))

from small_model import export_small_model

from components.model_optimizer import TFLiteModels
from components.model_optimizer.executor import PUBLISHED, PUBLISHED_VARIANT, REASON, REPORT, run_optimizer
from components.serving_pusher.executor import ServingPusherExecutor
from optimization.settings import OptimizationSettings

SETTINGS = OptimizationSettings(variants=["float32"], publish=["float32"], latency_repeats=1).model_dump_json()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Model, Examples (train and eval splits) and blessings laid out as Trainer/ExampleGen/Evaluator write them."""
    root = tmp_path_factory.mktemp("optimizer")
    small = export_small_model(root / "export")
    model = standard_artifacts.Model()
    model.uri = str(root / "model")
    shutil.copytree(small.path, root / "model" / "Format-Serving")
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = json.dumps(["train", "eval"])
    for split, files in (("train", small.train_files), ("eval", small.eval_files)):
        (root / "examples" / f"Split-{split}").mkdir(parents=True)
        shutil.copy(files[0], root / "examples" / f"Split-{split}" / "data.gz")
    return {"root": root, "model": model, "examples": examples}


def _blessing(blessed: int, kind=standard_artifacts.ModelBlessing):  # type: ignore[no-untyped-def]
    blessing = kind()
    blessing.set_int_custom_property("blessed", blessed)
    return blessing


def _optimized(artifacts: dict, name: str, evaluator: int = 1, validator: int = 1) -> TFLiteModels:
    output = TFLiteModels()
    output.uri = str(artifacts["root"] / name)
    run_optimizer(artifacts["model"], artifacts["examples"], output,
                  {"the Evaluator": _blessing(evaluator),
                   "the ModelValidator": _blessing(validator, standard_artifacts.InfraBlessing)},
                  SETTINGS, label="label", prediction_key="probability")
    return output


def _push(artifacts: dict, optimized: TFLiteModels, base: Path) -> Path:
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(base.parent / f"pushed-{base.name}")
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base)))
    ServingPusherExecutor().Do(
        {"model": [artifacts["model"]], "model_blessing": [_blessing(1)], "tflite_model": [optimized]},
        {"pushed_model": [pushed]},
        {"push_destination": json_format.MessageToJson(destination), "custom_config": "null",
         "reference_features": "[]"})
    version, = [p for p in base.iterdir() if p.name.isdigit()]
    return version


def test_blessed_model_is_optimized_and_its_gated_tflite_lands_in_the_pushed_version(artifacts: dict) -> None:
    optimized = _optimized(artifacts, "optimized")
    assert optimized.get_int_custom_property(PUBLISHED) == 1
    assert optimized.get_string_custom_property(PUBLISHED_VARIANT) == "float32"
    report = json.loads(optimized.get_string_custom_property(REPORT))
    assert [row["variant"] for row in report["rows"]] == ["saved_model", "float32"]
    assert report["eval_rows"] == 300 and report["published"] == "float32"
    assert optimized.get_float_custom_property("float32_auc") == pytest.approx(report["rows"][1]["auc"])

    version = _push(artifacts, optimized, artifacts["root"] / "serving")
    assert (version / "saved_model.pb").is_file()
    assert (version / "model.tflite").read_bytes() == (Path(optimized.uri) / "model.tflite").read_bytes()
    assert not list(version.glob(".*partial"))


@pytest.mark.parametrize(("evaluator", "validator", "refused"), [
    (0, 1, "the Evaluator"), (1, 0, "the ModelValidator"), (0, 0, "the Evaluator nor the ModelValidator")])
def test_unblessed_model_is_not_optimized_and_nothing_reaches_the_version(
        artifacts: dict, evaluator: int, validator: int, refused: str) -> None:
    optimized = _optimized(artifacts, f"unblessed-{evaluator}{validator}", evaluator, validator)
    assert optimized.get_int_custom_property(PUBLISHED) == 0
    assert optimized.get_string_custom_property(REASON) == f"not optimized: model not blessed by {refused}"
    assert not any(Path(optimized.uri).iterdir())


def test_pusher_leaves_tflite_out_when_the_gate_did_not_pass(artifacts: dict) -> None:
    refused = TFLiteModels()
    refused.uri = str(artifacts["root"] / "refused")
    Path(refused.uri).mkdir()
    (Path(refused.uri) / "model.tflite").write_bytes(b"a variant the gate refused")
    refused.set_int_custom_property(PUBLISHED, 0)
    version = _push(artifacts, refused, artifacts["root"] / "serving-refused")
    assert (version / "saved_model.pb").is_file() and not (version / "model.tflite").exists()
