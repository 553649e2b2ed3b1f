"""`esteira schema freeze`: the schema SchemaGen last inferred, written beside the configs for curation.

Once the file exists the pipeline imports it (ImportSchemaGen) instead of inferring a new schema per
run, so a reviewed schema, not the latest data, decides what an anomaly is.
"""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ml_metadata.proto import metadata_store_pb2 as mpb

from evidence import lineage
from pipeline.config import ConfigError, UseCaseConfig

INFERRING_COMPONENT = ".SchemaGen"  # execution type suffix of TFX's SchemaGen (not ImportSchemaGen)
SCHEMA_FILE = "schema.pbtxt"


def latest_inferred_schema(metadata_path: Path, pipeline_name: str) -> tuple[mpb.Artifact, mpb.Execution]:
    """The Schema artifact of the newest successful SchemaGen execution of the pipeline."""
    store = lineage.open_store(metadata_path)
    pipeline = store.get_context_by_type_and_name(lineage.PIPELINE_CONTEXT, pipeline_name)
    if pipeline is None:
        raise lineage.LineageError(f"pipeline {pipeline_name!r} has no runs in {metadata_path}; run it first")
    type_names = {t.id: t.name for t in store.get_execution_types()}
    done = (mpb.Execution.COMPLETE, mpb.Execution.CACHED)
    executions = [e for e in store.get_executions_by_context(pipeline.id)
                  if type_names.get(e.type_id, "").endswith(INFERRING_COMPONENT) and e.last_known_state in done]
    for execution in sorted(executions, key=lambda e: e.id, reverse=True):
        schemas = lineage.output_artifacts(store, execution.id, "schema")
        if schemas:
            return schemas[0], execution
    raise lineage.LineageError(
        f"pipeline {pipeline_name!r} has no schema inferred by SchemaGen in {metadata_path}; run the pipeline "
        "without a curated schema first")


def freeze_schema(config: UseCaseConfig, force: bool = False) -> Path:
    """Copy the latest inferred schema to ``validation.schema_file``; refuse to overwrite unless ``force``."""
    target = config.validation.schema_file
    if target is None:
        raise ConfigError("validation.schema_file: no path to write the schema to")
    if target.exists() and not force:
        raise ConfigError(f"validation.schema_file: {target} already exists (a curated schema); "
                          "pass --force to replace it with the inferred one")
    artifact, execution = latest_inferred_schema(config.pipeline.metadata_path, config.pipeline.name)
    text = (Path(artifact.uri) / SCHEMA_FILE).read_text()
    when = datetime.fromtimestamp(execution.create_time_since_epoch / 1000, tz=UTC)
    header = (f"# Inferred by SchemaGen (execution {execution.id}, {when:%Y-%m-%d %H:%M} UTC) for pipeline "
              f"{config.pipeline.name}; frozen by `esteira schema freeze`.\n"
              "# The pipeline now imports this file instead of inferring a schema: curate it (domains, "
              "presence, value counts) and review changes like code.\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + text)
    return target
