"""``esteira console``: serve the model review console on 127.0.0.1 (uvicorn), for one use case."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import sys
from pathlib import Path

from console.settings import DEFAULT_METRICS_PATH, ConsoleSettings

DEFAULT_AUDIT_LOG = "outputs/audit/registry.jsonl"  # the same log `esteira promote` appends to


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esteira console", description=console_main.__doc__)
    parser.add_argument("--config", type=Path, required=True,
                        help="use-case YAML: model name, MLMD, serving base path, MLflow store, reports folder")
    parser.add_argument("--model_config_file", type=Path, required=True,
                        help="the models.config the model server reads (promote rewrites its labels)")
    parser.add_argument("--reviewer_tokens", help="file of caller:token lines allowed to review")
    parser.add_argument("--approver_tokens", help="file of caller:token lines allowed to promote and roll back")
    parser.add_argument("--server", default="http://127.0.0.1:8501", help="REST address of the model server")
    parser.add_argument("--grpc_server", default="127.0.0.1:8500",
                        help="gRPC host:port the new labels are sent to on promote/rollback ('' = file only)")
    parser.add_argument("--server_token", default=os.environ.get("ESTEIRA_TOKEN"),
                        help="bearer token for the model server (default: ESTEIRA_TOKEN)")
    parser.add_argument("--tracking_uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else the config's)")
    parser.add_argument("--reports", type=Path, help="reports folder (default: <pipeline root>/../reports)")
    parser.add_argument("--audit_log", type=Path, default=Path(os.environ.get("ESTEIRA_AUDIT_LOG", DEFAULT_AUDIT_LOG)))
    parser.add_argument("--metrics_path", default=DEFAULT_METRICS_PATH, help="the server's Prometheus path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    return parser


def settings_from(args: argparse.Namespace) -> ConsoleSettings:
    from pipeline.config import load_config
    from tracking.store import LOCAL_FOLDER, resolve_target

    config = load_config(args.config)  # paths already absolute
    tracking_uri = args.tracking_uri or resolve_target(config.tracking.uri, config.pipeline.root / LOCAL_FOLDER).uri
    return ConsoleSettings(
        model_name=config.serving.model_name, tracking_uri=tracking_uri, base_path=config.serving.base_path,
        model_config_file=args.model_config_file, server_url=args.server, audit_log=args.audit_log,
        reviewer_tokens=args.reviewer_tokens, approver_tokens=args.approver_tokens,
        grpc_server=args.grpc_server or None, server_token=args.server_token,
        metadata_path=config.pipeline.metadata_path,
        reports_folder=args.reports or config.pipeline.root.parent / "reports",
        label_key=config.data.label, metrics_path=args.metrics_path)


def console_main(argv: list[str]) -> int:
    """Compare model versions, read their evidence, try predictions, promote and roll back (approvers)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    import uvicorn

    from console.access import AccessConfigError
    from console.app import create_app

    try:
        app = create_app(settings_from(args))
    except (AccessConfigError, ValueError, OSError) as error:  # ValueError: the config's ConfigError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"esteira console on http://{args.host}:{args.port}/ (sign in with a reviewer or approver token)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
