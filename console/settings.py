"""Where the console reads its evidence and whom it lets in: one value built by the CLI or a test."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class ConsoleSettings:
    """Everything the console reads, named once; nothing about a use case is hard-coded in the app."""

    model_name: str
    tracking_uri: str
    base_path: Path
    model_config_file: Path
    server_url: str
    audit_log: Path
    reviewer_tokens: str | None = None
    approver_tokens: str | None = None
    grpc_server: str | None = None
    server_token: str | None = None
    metadata_path: Path | None = None
    reports_folder: Path | None = None
    pipeline_reports: Path | None = None  # the GovernanceReport component's output folder
    label_key: str | None = None
    metrics_path: str = DEFAULT_METRICS_PATH
    eval_rows: int = 500
    access_audit_logs: tuple[Path, ...] = ()  # the model server's access audit logs (governance.access_audit_logs)
