"""runner.engine expands to arguments Beam's own option parser reads as meant, TFX stops building its
per-component sdist for them, and each missing or contradicting value is one error naming the key."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)
from apache_beam.transforms.environments import Environment, ExternalEnvironment
from tfx.utils.dependency_utils import make_beam_dependency_flags

from pipeline.beam_engines import check_artifact_root
from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "breast_cancer.yaml"
IMAGE = "registry.example/esteira-pipeline:1.4"
FLINK = {"job_endpoint": "esteira-flink-jobserver.esteira:8099", "sdk_container_image": IMAGE, "parallelism": 4}
SPARK = {"job_endpoint": "beam-spark-jobserver.data:8099", "sdk_container_image": IMAGE,
         "temp_location": "s3://bank-ml/tmp"}
DATAFLOW = {"project": "bank-ml", "region": "southamerica-east1", "temp_location": "gs://bank-ml/tmp",
            "sdk_container_image": IMAGE, "max_num_workers": 40, "machine_type": "n2-standard-4"}


def runner_config(tmp_path: Path, runner: dict[str, Any]) -> Path:
    data = yaml.safe_load(CONFIG.read_text())
    data["runner"] = {"kubeflow_image": IMAGE, **runner}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def beam_args(tmp_path: Path, runner: dict[str, Any]) -> list[str]:
    return load_config(runner_config(tmp_path, runner), base=tmp_path).runner.beam_args


def error_of(tmp_path: Path, runner: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(runner_config(tmp_path, runner), base=tmp_path)
    return str(error.value)


def test_flink_arguments_mean_to_beam_what_the_section_says(tmp_path: Path) -> None:
    args = beam_args(tmp_path, {"engine": "flink", "flink": FLINK})
    options = PipelineOptions(args)
    portable = options.view_as(PortableOptions)
    assert options.view_as(StandardOptions).runner == "PortableRunner"
    assert portable.job_endpoint == "esteira-flink-jobserver.esteira:8099"
    assert options.view_as(FlinkRunnerOptions).parallelism == 4
    assert options.view_as(WorkerOptions).sdk_container_image == IMAGE
    environment = Environment.from_options(portable)  # what the job server is told to start our code in
    assert isinstance(environment, ExternalEnvironment) and environment.url == "localhost:50000"


def test_dataflow_arguments_mean_to_beam_what_the_section_says(tmp_path: Path) -> None:
    options = PipelineOptions(beam_args(tmp_path, {"engine": "dataflow", "dataflow": DATAFLOW}))
    cloud, workers = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert (cloud.project, cloud.region, cloud.temp_location) == ("bank-ml", "southamerica-east1", "gs://bank-ml/tmp")
    assert (workers.max_num_workers, workers.machine_type, workers.sdk_container_image) == (
        40, "n2-standard-4", IMAGE)
    assert options.get_all_options()["sdk_location"] == "container"


@pytest.mark.parametrize(("engine", "section"), [("flink", FLINK), ("spark", SPARK), ("dataflow", DATAFLOW)])
def test_every_cluster_argument_is_one_beam_knows_and_tfx_adds_no_sdist(tmp_path: Path, engine: str,
                                                                       section: dict[str, Any]) -> None:
    args = beam_args(tmp_path, {"engine": engine, engine: section})
    known = PipelineOptions(args).get_all_options(drop_default=True)
    for arg in args:
        name, _, value = arg.removeprefix("--").partition("=")
        assert str(known.get(name)) == value, f"Beam did not read {arg} as given: {known.get(name)!r}"
    assert make_beam_dependency_flags(args) == args  # the image carries our code: no ephemeral package


def test_own_beam_args_follow_the_engine_and_revalidate_unchanged(tmp_path: Path) -> None:
    config = load_config(runner_config(tmp_path, {"engine": "flink", "flink": FLINK,
                                                  "beam_args": ["--experiments=pre_optimize=all"]}), base=tmp_path)
    assert config.runner.beam_args[0] == "--runner=PortableRunner"
    assert config.runner.beam_args[-1] == "--experiments=pre_optimize=all"
    again = config.with_overrides({"runner.flink.parallelism": 8})
    assert "--parallelism=8" in again.runner.beam_args and "--parallelism=4" not in again.runner.beam_args
    assert again.runner.beam_args.count("--runner=PortableRunner") == 1


def test_direct_engine_keeps_the_shipped_beam_args(tmp_path: Path) -> None:
    assert load_config(CONFIG, base=tmp_path).runner.beam_args == ["--runner=FnApiRunner"]
    assert beam_args(tmp_path, {"engine": "direct"}) == ["--runner=FnApiRunner"]


def test_an_engine_without_its_section_names_the_keys_it_needs(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"engine": "flink"})
    assert "runner.engine: flink needs a runner.flink section" in message
    assert "job_endpoint" in message and "sdk_container_image" in message and "parallelism" in message


def test_a_missing_value_is_named_by_its_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"engine": "spark", "spark": {"sdk_container_image": IMAGE}})
    assert "runner.spark.job_endpoint: required key is missing" in message
    message = error_of(tmp_path, {"engine": "dataflow", "dataflow": {**DATAFLOW, "project": None}})
    assert "runner.dataflow.project" in message


def test_beam_args_contradicting_the_engine_are_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"engine": "flink", "flink": FLINK, "beam_args": ["--runner=FnApiRunner"]})
    assert "runner.beam_args" in message and "--runner=PortableRunner" in message
    assert "remove --runner from beam_args" in message


def test_dataflow_folders_must_be_cloud_storage(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"engine": "dataflow", "dataflow": {**DATAFLOW, "temp_location": "/tmp/x"}})
    assert "runner.dataflow.temp_location" in message and "gs://" in message


def test_an_unknown_engine_is_refused_with_the_near_one(tmp_path: Path) -> None:
    message = error_of(tmp_path, {"engine": "flnk"})
    assert "runner.engine" in message and "did you mean 'flink'?" in message


def test_dataflow_artifacts_must_be_on_cloud_storage_and_other_engines_take_a_mounted_folder() -> None:
    check_artifact_root("dataflow", "gs://bank-ml/esteira", in_process=False)
    check_artifact_root("flink", "/pipeline/fraud/pipeline", in_process=True)  # the claim k8s/flink mounts
    with pytest.raises(ConfigError, match="--runner kubeflow"):
        check_artifact_root("dataflow", "/pipeline/fraud/pipeline", in_process=True)
    with pytest.raises(ConfigError, match=r"pipeline.remote_root or --pipeline-root to gs://"):
        check_artifact_root("dataflow", "minio://mlpipeline/esteira", in_process=False)


def test_a_remote_root_names_its_object_store(tmp_path: Path) -> None:
    data = yaml.safe_load(CONFIG.read_text())
    data["pipeline"]["remote_root"] = "bank-ml/esteira"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"pipeline.remote_root.*no scheme.*gs://"):
        load_config(path, base=tmp_path)
