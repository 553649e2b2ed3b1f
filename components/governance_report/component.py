"""GovernanceReport: runs after the Pusher and writes the reports of the version it pushed."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.governance_report.executor import (
    DRIFT_EXCLUDED_KEY,
    GOVERNANCE_KEY,
    METADATA_PATH_KEY,
    MODEL_NAME_KEY,
    PUSHED_MODEL_KEY,
    REPORT_KEY,
    GovernanceReportExecutor,
)


class GovernanceReportArtifact(types.Artifact):
    """A folder with drift/ and lgpd/ reports of one pushed version; properties say what it found."""

    TYPE_NAME = "esteira.GovernanceReport"  # KFP v2 needs <namespace>.<Name> for custom types


class GovernanceReportSpec(ComponentSpec):
    INPUTS = {PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel)}
    OUTPUTS = {REPORT_KEY: ChannelParameter(type=GovernanceReportArtifact)}
    PARAMETERS = {
        METADATA_PATH_KEY: ExecutionParameter(type=str),
        MODEL_NAME_KEY: ExecutionParameter(type=str),
        GOVERNANCE_KEY: ExecutionParameter(type=str, optional=True),
        DRIFT_EXCLUDED_KEY: ExecutionParameter(type=str, optional=True),  # JSON: feature -> why not scored
    }


class GovernanceReport(base_component.BaseComponent):
    """Reads the pipeline's MLMD (``metadata_path``) for the lineage of the pushed version; a run
    that pushed nothing records why and writes no report."""

    SPEC_CLASS = GovernanceReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(GovernanceReportExecutor)

    def __init__(self, pushed_model: types.BaseChannel, metadata_path: str, model_name: str,
                 governance_json: str = "", drift_excluded_json: str = "") -> None:
        super().__init__(spec=GovernanceReportSpec(
            pushed_model=pushed_model, metadata_path=metadata_path, model_name=model_name,
            governance=governance_json, drift_excluded=drift_excluded_json,
            report=types.Channel(type=GovernanceReportArtifact)))
