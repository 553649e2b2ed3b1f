"""The Kubeflow Pipelines v2 spec compiles and parses strictly with kfp's own proto."""
from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.config import load_config
from pipeline.runners import compile_kubeflow

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "ModelValidator", "ModelOptimizer", "Pusher", "GovernanceReport", "MlflowLogger")


def test_spec_parses_strictly_and_names_every_component(tmp_path: Path) -> None:
    config = load_config(REPO / "configs" / "breast_cancer.yaml", base=tmp_path)
    path = compile_kubeflow(config, tmp_path / "spec.json", image="registry.example/esteira:1")
    job = json.loads(path.read_text())
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(job["pipelineSpec"], spec, ignore_unknown_fields=False)
    tasks = spec.root.dag.tasks
    for component in COMPONENTS:
        assert component in tasks, f"{component} missing from {sorted(tasks)}"
    assert any(name.startswith("latest_blessed_model_resolver") for name in tasks)
    assert spec.pipeline_info.name == "breast-cancer"
    deployment = json_format.MessageToDict(spec.deployment_spec)
    images = {e["container"]["image"] for e in deployment["executors"].values() if "container" in e}
    assert images == {"registry.example/esteira:1"}
