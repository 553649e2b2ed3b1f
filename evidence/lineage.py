"""MLMD queries: what a pipeline run did, and where a served model came from.

ml-metadata 1.21 dropped ZetaSQL filter queries, so lineage is walked explicitly through events:
an artifact's producer is the execution with an OUTPUT event on it; an execution's inputs are its
INPUT events.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2 as mpb

from errors import EsteiraError

NODE_CONTEXT = "node"
PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "pipeline_run"


class LineageError(EsteiraError, LookupError):
    """The metadata store does not hold what was asked for."""


def open_store(metadata_path: Path) -> mlmd.MetadataStore:
    if not Path(metadata_path).is_file():
        raise LineageError(f"no metadata database at {metadata_path}; run the pipeline first")
    config = mpb.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = mpb.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(config)


@dataclass(frozen=True)
class NodeExecution:
    """One component's execution within a run."""

    node: str
    state: str
    seconds: float
    execution_id: int


def node_name(store: mlmd.MetadataStore, execution_id: int) -> str:
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == NODE_CONTEXT:
            return context.name.split(".", 1)[-1]
    return "?"


def latest_run_id(store: mlmd.MetadataStore, pipeline_name: str) -> str:
    """The newest pipeline_run context of the pipeline (run ids are timestamps in local runs)."""
    pipeline = store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline_name)
    if pipeline is None:
        raise LineageError(f"pipeline {pipeline_name!r} has no runs in this metadata store")
    run_ids = {context.id for context in store.get_contexts_by_type(RUN_CONTEXT)}
    executions = store.get_executions_by_context(pipeline.id)
    runs = [context for execution in executions for context in store.get_contexts_by_execution(execution.id)
            if context.id in run_ids]
    if not runs:
        raise LineageError(f"pipeline {pipeline_name!r} has no runs in this metadata store")
    return max(runs, key=lambda context: (context.create_time_since_epoch, context.id)).name


def run_executions(store: mlmd.MetadataStore, run_id: str) -> list[NodeExecution]:
    """Every execution of one run, in execution order, with its state and wall time."""
    context = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
    if context is None:
        raise LineageError(f"no pipeline run {run_id!r}")
    executions = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
    return [NodeExecution(
        node=node_name(store, execution.id),
        state=mpb.Execution.State.Name(execution.last_known_state),
        seconds=(execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000.0,
        execution_id=execution.id) for execution in executions]


def output_artifacts(store: mlmd.MetadataStore, execution_id: int, key: str) -> list[mpb.Artifact]:
    return _artifacts_by_event(store, execution_id, key, mpb.Event.OUTPUT)


def input_artifacts(store: mlmd.MetadataStore, execution_id: int, key: str) -> list[mpb.Artifact]:
    return _artifacts_by_event(store, execution_id, key, mpb.Event.INPUT)


def _artifacts_by_event(store: mlmd.MetadataStore, execution_id: int, key: str,
                        event_type: int) -> list[mpb.Artifact]:
    ids = [event.artifact_id for event in store.get_events_by_execution_ids([execution_id])
           if event.type == event_type and event.path.steps and event.path.steps[0].key == key]
    return store.get_artifacts_by_id(ids) if ids else []


def producer(store: mlmd.MetadataStore, artifact_id: int) -> int:
    """The execution that first produced the artifact (later cached executions reuse it)."""
    producers = sorted(event.execution_id for event in store.get_events_by_artifact_ids([artifact_id])
                       if event.type == mpb.Event.OUTPUT)
    if not producers:
        raise LineageError(f"artifact {artifact_id} has no producing execution")
    return producers[0]


def artifact_type(store: mlmd.MetadataStore, artifact: mpb.Artifact) -> str:
    return store.get_artifact_types_by_id([artifact.type_id])[0].name


@dataclass(frozen=True)
class ModelLineage:
    """A pushed model traced back to the examples it was trained on."""

    pushed_model: mpb.Artifact
    blessing: mpb.Artifact
    model: mpb.Artifact
    transformed_examples: mpb.Artifact
    examples: mpb.Artifact


def _single(artifacts: list[mpb.Artifact], what: str) -> mpb.Artifact:
    if len(artifacts) != 1:
        raise LineageError(f"expected one {what} artifact, found {len(artifacts)}")
    return artifacts[0]


def trace_pushed_model(store: mlmd.MetadataStore, pushed_model: mpb.Artifact) -> ModelLineage:
    """PushedModel ← Pusher(model, blessing) ← Trainer(transformed examples) ← Transform(examples)."""
    pusher = producer(store, pushed_model.id)
    model = _single(input_artifacts(store, pusher, "model"), "Model")
    blessing = _single(input_artifacts(store, pusher, "model_blessing"), "ModelBlessing")
    trainer = producer(store, model.id)
    transformed = _single(input_artifacts(store, trainer, "examples"), "transformed Examples")
    transform = producer(store, transformed.id)
    examples = _single(input_artifacts(store, transform, "examples"), "Examples")
    return ModelLineage(pushed_model, blessing, model, transformed, examples)


def pushed_models(store: mlmd.MetadataStore) -> list[mpb.Artifact]:
    """PushedModel artifacts that really published a version, oldest first."""
    return [artifact for artifact in store.get_artifacts_by_type("PushedModel")
            if artifact.custom_properties["pushed"].int_value == 1]
