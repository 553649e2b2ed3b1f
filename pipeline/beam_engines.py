"""The Beam engine a pipeline's Beam components run on, expanded to the arguments that engine's runner takes.

A team outgrowing one machine names its engine (`runner.engine: flink | spark | dataflow`) and that
engine's few facts (where its job server listens, which image holds our code); the flags Beam wants are
derived here, once, so the config never carries a hand-copied list that drifts from the cluster.
Flink and Spark go through Beam's portable runner to a job server already running on the cluster (the
FlinkRunner/SparkRunner classes would fetch a job-server jar from Maven at submit time) and run our code
in the SDK worker pool beside each task manager (`--environment_type=EXTERNAL`, k8s/flink/). Every
engine names the pipeline image as `--sdk_container_image`, which also tells TFX 1.21 not to sdist the
whole install for each Beam component (tfx.utils.dependency_utils). Pure pydantic: no Beam import.
"""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from errors import ConfigError, EsteiraError

EngineName = Literal["direct", "flink", "spark", "dataflow"]

_ENDPOINT = r"^[A-Za-z0-9.\-_\[\]:]+:[0-9]{1,5}$"
OBJECT_STORE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # gs://, s3://, minio://, hdfs://


class EngineError(EsteiraError, ValueError):
    """runner.beam_args contradicts what runner.engine sets."""


class _Engine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sdk_container_image: str = Field(
        min_length=1, description="the pipeline image (docker/pipeline.Dockerfile) pushed where the workers "
                                  "pull from, e.g. registry.example/esteira-pipeline:1.4; it holds our code")


class _PortableEngine(_Engine):
    job_endpoint: str = Field(
        pattern=_ENDPOINT, description="host:port of the Beam job server, e.g. esteira-flink-jobserver.esteira:8099")
    worker_pool: str = Field(
        default="localhost:50000", pattern=_ENDPOINT,
        description="host:port of the SDK worker pool as the task managers see it (the sidecar: localhost:50000)")
    artifact_endpoint: str | None = Field(
        default=None, pattern=_ENDPOINT, description="the job server's artifact service (null: the one it announces)")
    temp_location: str | None = Field(
        default=None, description="a folder every worker can write (s3://, gs:// or a shared mount) for Beam's temp "
                                  "files; null: under each output artifact")

    def portable_args(self) -> list[str]:
        args = ["--runner=PortableRunner", f"--job_endpoint={self.job_endpoint}",
                "--environment_type=EXTERNAL", f"--environment_config={self.worker_pool}",
                f"--sdk_container_image={self.sdk_container_image}"]
        if self.artifact_endpoint:
            args.append(f"--artifact_endpoint={self.artifact_endpoint}")
        if self.temp_location:
            args.append(f"--temp_location={self.temp_location}")
        return args


class FlinkEngine(_PortableEngine):
    """Beam on a Flink session cluster through the Beam Flink job server (k8s/flink/)."""

    parallelism: int = Field(ge=1, description="Flink task slots a Beam stage uses, e.g. the task managers' slots")
    max_parallelism: int | None = Field(default=None, ge=1, description="Flink's key-group ceiling (null: Flink's)")

    def args(self) -> list[str]:
        args = [*self.portable_args(), f"--parallelism={self.parallelism}"]
        if self.max_parallelism is not None:
            args.append(f"--max_parallelism={self.max_parallelism}")
        return args


class SparkEngine(_PortableEngine):
    """Beam on a Spark cluster through the Beam Spark job server (apache/beam_spark3_job_server)."""

    def args(self) -> list[str]:
        return self.portable_args()


class DataflowEngine(_Engine):
    """Beam on Google Cloud Dataflow with the pipeline image as custom SDK container (Runner v2)."""

    project: str = Field(min_length=1, description="Google Cloud project id")
    region: str = Field(min_length=1, description="Dataflow region, e.g. southamerica-east1")
    temp_location: str = Field(description="gs:// folder for Dataflow's temp files")
    staging_location: str | None = Field(default=None, description="gs:// folder for staged files (null: temp)")
    max_num_workers: int | None = Field(default=None, ge=1, description="autoscaling ceiling")
    machine_type: str | None = Field(default=None, description="worker machine type, e.g. n2-standard-4")
    service_account_email: str | None = Field(default=None, description="worker service account")
    subnetwork: str | None = Field(default=None, description="regions/<region>/subnetworks/<name> for private IPs")

    @field_validator("temp_location", "staging_location")
    @classmethod
    def _on_cloud_storage(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("gs://"):
            raise ValueError(f"Dataflow workers read and write Cloud Storage: use a gs:// folder, not {value!r}")
        return value

    def args(self) -> list[str]:
        args = ["--runner=DataflowRunner", f"--project={self.project}", f"--region={self.region}",
                f"--temp_location={self.temp_location}", f"--sdk_container_image={self.sdk_container_image}",
                "--sdk_location=container"]  # the SDK is in the image: nothing downloaded or staged at submit
        optional = {"staging_location": self.staging_location, "max_num_workers": self.max_num_workers,
                    "machine_type": self.machine_type, "service_account_email": self.service_account_email,
                    "subnetwork": self.subnetwork}
        args += [f"--{name}={value}" for name, value in optional.items() if value is not None]
        return args


def check_artifact_root(engine: EngineName, root: str, *, in_process: bool) -> None:
    """Refuse, before any TFX work, an artifact root the engine's workers cannot write: Dataflow's workers
    are Cloud machines, so the Beam components' outputs (TFX writes them under the root) must be on Cloud
    Storage; Flink and Spark workers write a volume mounted at the same path, or an object store."""
    if engine != "dataflow" or root.startswith("gs://"):
        return
    if in_process:
        raise ConfigError(f"runner.engine: dataflow writes the Beam components' artifacts from Cloud workers, which "
                          f"cannot reach pipeline.root {root}; submit with --runner kubeflow and "
                          "pipeline.remote_root (or --pipeline-root) gs://<bucket>/<folder>, or use engine direct")
    raise ConfigError(f"runner.engine: dataflow needs the artifacts on Cloud Storage, not {root!r}; set "
                      "pipeline.remote_root or --pipeline-root to gs://<bucket>/<folder>")


def _flag(arg: str) -> tuple[str, str | None]:
    """('--name', value or None) of one Beam argument written --name=value or --flag."""
    name, sep, value = arg.partition("=")
    return name, value if sep else None


def merge_args(engine: str, engine_args: list[str], extra: list[str]) -> list[str]:
    """The engine's arguments followed by the config's own beam_args; an extra argument repeating an engine
    flag with the same value is dropped (so a validated config re-validates unchanged), with another value it
    is an error: the engine's section is where that value lives."""
    owned = dict(_flag(arg) for arg in engine_args)
    merged = list(engine_args)
    for arg in extra:
        name, value = _flag(arg)
        if name not in owned:
            merged.append(arg)
        elif owned[name] != value:
            raise EngineError(
                f"runner.beam_args has {arg!r} but runner.engine: {engine} sets {name}={owned[name]}; remove "
                f"{name} from beam_args (set it in the runner.{engine} section if it has that key)")
    return merged
