"""`esteira run` names a config error in a fresh process before TensorFlow or TFX is imported."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Runs the CLI as `esteira run` would, then reports which heavy stacks the process had imported by then.
PROBE = """
import json, sys
from cli.main import main
code = main(["run", "--config", sys.argv[1]])
loaded = sorted(name for name in ("tensorflow", "tfx", "tensorflow_transform", "apache_beam") if name in sys.modules)
print(json.dumps({"code": code, "loaded": loaded}))
"""


def run_probe(config: Path) -> tuple[dict, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, str(config)], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def edited(tmp_path: Path, name: str, old: str, new: str) -> Path:
    text = (REPO / "configs" / name).read_text()
    assert text.count(old) == 1, f"{old!r} is not once in configs/{name}"
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(("name", "old", "new", "hint"), [
    ("breast_cancer.yaml", "  train_steps: 300", "  trian_steps: 300", "did you mean training.train_steps?"),
    ("fraud.yaml", "  train_steps: 600 ", "  trian_steps: 600 ", "did you mean training.train_steps?"),
    # Inside the ExampleGen's feature sections, whose transforms (not their settings) need Beam.
    ("fraud.yaml", "\n  length: ", "\n  lenght: ", "did you mean sequence_features.length?"),
    ("fraud_handbook.yaml", "  label_delay_days: ", "  label_delay_day: ",
     "did you mean window_features.label_delay_days?"),
    ("breast_cancer.yaml", "  default: local", "  default: lcoal", "did you mean 'local'?"),
])
def test_a_near_miss_is_named_before_tensorflow_tfx_or_beam_load(tmp_path: Path, name: str, old: str, new: str,
                                                                 hint: str) -> None:
    outcome, stderr = run_probe(edited(tmp_path, name, old, new))
    assert outcome == {"code": 2, "loaded": []}, stderr
    assert stderr.startswith(f"esteira: error: {tmp_path / name}: ") and stderr.rstrip().endswith(hint), stderr


def test_a_missing_config_file_names_the_nearest_one(tmp_path: Path) -> None:
    outcome, stderr = run_probe(Path("configs/breast_cancr.yaml"))
    assert outcome == {"code": 2, "loaded": []}
    assert "config file configs/breast_cancr.yaml not found; did you mean configs/breast_cancer.yaml?" in stderr


def test_an_object_store_root_is_refused_with_the_key_that_takes_it(tmp_path: Path) -> None:
    outcome, stderr = run_probe(edited(tmp_path, "breast_cancer.yaml", "  root: outputs/breast_cancer/pipeline",
                                       "  root: gs://bank-ml/esteira/breast-cancer"))
    assert outcome == {"code": 2, "loaded": []}, stderr
    assert "pipeline.root" in stderr and "pipeline.remote_root: gs://bank-ml/esteira/breast-cancer" in stderr


def test_dataflow_in_process_is_refused_before_any_tfx_work(tmp_path: Path) -> None:
    """Dataflow's workers could not write the local pipeline.root the run would hand them."""
    data = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
    data["runner"] = {"engine": "dataflow", "dataflow": {
        "project": "bank-ml", "region": "southamerica-east1", "temp_location": "gs://bank-ml/tmp",
        "sdk_container_image": "registry.example/esteira-pipeline:1.4"}}
    config = tmp_path / "breast_cancer.yaml"
    config.write_text(yaml.safe_dump(data))
    outcome, stderr = run_probe(config)
    assert outcome == {"code": 2, "loaded": []}, stderr
    assert "runner.engine: dataflow" in stderr and "--runner kubeflow" in stderr and "remote_root" in stderr
