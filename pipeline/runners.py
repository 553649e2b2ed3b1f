"""Runners: the same DAG under LocalDagRunner, BeamDagRunner, or compiled for Kubeflow Pipelines v2."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal, TextIO

from tfx import v1 as tfx
from tfx.orchestration.pipeline import RunOptions

from pipeline.config import UseCaseConfig
from pipeline.dag import create_pipeline
from pipeline.progress import component_progress

RunnerName = Literal["local", "beam"]


def prepare_devices(config: UseCaseConfig) -> None:
    """Split the CPU into logical devices for a mirrored run; must precede every TensorFlow op
    in the process, because LocalDagRunner runs Transform (TF ops) before the Trainer here."""
    distribution = config.training.distribution
    if distribution.strategy == "mirrored" and distribution.num_replicas > 1:
        from models.common.strategy import configure_logical_cpus

        configure_logical_cpus(distribution.num_replicas)


def run_options(pipeline: tfx.dsl.Pipeline, to_node: str | None) -> RunOptions | None:
    """TFX's partial run up to `to_node` and what it needs, or None for the whole pipeline."""
    if to_node is None:
        return None
    ids = [component.id for component in pipeline.components]
    if to_node not in ids:
        raise ValueError(f"--to {to_node!r} is not a component of {pipeline.pipeline_info.pipeline_name}; "
                         f"components: {', '.join(ids)}")
    return RunOptions(to_nodes=[to_node])


def run(config: UseCaseConfig, runner: RunnerName = "local", to_node: str | None = None,
        progress: TextIO | None = None) -> None:
    """Run the pipeline in this process (components run one after another), whole or up to `to_node`;
    with ``progress``, a line there as each component starts and ends."""
    prepare_devices(config)
    pipeline = create_pipeline(config)
    options = run_options(pipeline, to_node)
    if runner == "local":
        dag_runner: Any = tfx.orchestration.LocalDagRunner()
    elif runner == "beam":
        # Not exported in tfx.v1 but maintained in 1.21; it orchestrates each node as a Beam ParDo.
        from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
        dag_runner = BeamDagRunner()
    else:
        raise ValueError(f"unknown runner {runner!r}; use 'local' or 'beam'")
    with component_progress(progress, len(pipeline.components)) if progress else nullcontext():
        dag_runner.run(pipeline, run_options=options)


def compile_kubeflow(config: UseCaseConfig, output: Path, image: str | None = None) -> Path:
    """Write a Kubeflow Pipelines v2 / Vertex AI PipelineJob spec (JSON) without submitting it."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kfp_v2

    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    runner_config = kfp_v2.KubeflowV2DagRunnerConfig(
        default_image=image or config.runner.kubeflow_image, display_name=config.pipeline.name)
    pipeline = create_pipeline(config, pipeline_root=config.pipeline.remote_root)
    kfp_v2.KubeflowV2DagRunner(config=runner_config, output_dir=str(output.parent),
                               output_filename=output.name).run(pipeline)
    return output
