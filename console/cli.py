"""``esteira console``: serve the model review console on 127.0.0.1 (uvicorn), for one use case."""
from __future__ import annotations

import os

from errors import EsteiraError

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
    parser.add_argument("--stack", type=Path,
                        help="a running `make stack` state folder (outputs/stack): its server, models.config and "
                             "MLflow are the defaults of the flags below")
    parser.add_argument("--model_config_file", type=Path,
                        help="the models.config the model server reads (promote rewrites its labels)")
    parser.add_argument("--reviewer_tokens", help="file of caller:token lines allowed to review")
    parser.add_argument("--approver_tokens", help="file of caller:token lines allowed to promote and roll back")
    parser.add_argument("--tokens_dir", type=Path,
                        help="create (once) and use a reviewer and an approver token file in this folder "
                             "when --reviewer_tokens/--approver_tokens are not given")
    parser.add_argument("--server", help="REST address of the model server (default: the stack's, else "
                                         "http://127.0.0.1:8501)")
    parser.add_argument("--grpc_server",
                        help="gRPC host:port the new labels are sent to on promote/rollback ('' = file only; "
                             "default: the stack's, else 127.0.0.1:8500)")
    parser.add_argument("--server_token", default=os.environ.get("ESTEIRA_TOKEN"),
                        help="bearer token for the model server (default: ESTEIRA_TOKEN)")
    parser.add_argument("--tracking_uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else the config's)")
    parser.add_argument("--reports", type=Path, help="reports folder (default: <pipeline root>/../reports)")
    parser.add_argument("--audit_log", type=Path, default=Path(os.environ.get("ESTEIRA_AUDIT_LOG", DEFAULT_AUDIT_LOG)))
    parser.add_argument("--metrics_path", default=DEFAULT_METRICS_PATH, help="the server's Prometheus path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    return parser


class ConsoleStartError(EsteiraError, ValueError):
    """A flag is missing or the stack it names is not running; the message says what to pass or start."""


def _with_stack_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the server, models.config and MLflow flags from a running stack; refuse what stays missing."""
    if args.stack is not None:
        from observability.stack import StackError, read_state

        try:
            state = read_state(args.stack)
        except StackError as error:
            raise ConsoleStartError(str(error)) from None
        args.server = args.server or state["rest_url"]
        args.grpc_server = state["grpc"] if args.grpc_server is None else args.grpc_server
        args.model_config_file = args.model_config_file or Path(str(state["model_config_file"]))
        args.tracking_uri = args.tracking_uri or state["mlflow_url"]
    if args.model_config_file is None:
        raise ConsoleStartError("pass --model_config_file (the models.config the model server reads) or "
                                "--stack outputs/stack for a running `make stack`")
    args.server = args.server or "http://127.0.0.1:8501"
    args.grpc_server = "127.0.0.1:8500" if args.grpc_server is None else args.grpc_server
    return args


def settings_from(args: argparse.Namespace) -> ConsoleSettings:
    from console.reports import component_reports
    from pipeline.config import load_config
    from tracking.store import LOCAL_FOLDER, resolve_target

    args = _with_stack_defaults(args)
    config = load_config(args.config)  # paths already absolute
    tracking_uri = args.tracking_uri or resolve_target(config.tracking.uri, config.pipeline.root / LOCAL_FOLDER).uri
    return ConsoleSettings(
        model_name=config.serving.model_name, tracking_uri=tracking_uri, base_path=config.serving.base_path,
        model_config_file=args.model_config_file, server_url=args.server, audit_log=args.audit_log,
        reviewer_tokens=args.reviewer_tokens, approver_tokens=args.approver_tokens,
        grpc_server=args.grpc_server or None, server_token=args.server_token,
        metadata_path=config.pipeline.metadata_path,
        reports_folder=args.reports or config.pipeline.root.parent / "reports",
        pipeline_reports=component_reports(config.pipeline.root),
        label_key=config.data.label, metrics_path=args.metrics_path,
        access_audit_logs=tuple(config.governance.access_audit_logs) if config.governance else ())


def _sign_in_help(args: argparse.Namespace) -> str:
    """Create the local token files when asked, and say how to sign in."""
    if args.tokens_dir is None or (args.reviewer_tokens and args.approver_tokens):
        return "sign in with a reviewer or approver token"
    from console.tokens import ensure_token_files, first_token

    files = ensure_token_files(args.tokens_dir)
    args.reviewer_tokens = args.reviewer_tokens or str(files.reviewer)
    args.approver_tokens = args.approver_tokens or str(files.approver)
    lines = [f"{'created' if files.created else 'using'} token files in {args.tokens_dir} (kept out of git); "
             "sign in with the token after the caller's name:"]
    for path in (Path(args.approver_tokens), Path(args.reviewer_tokens)):
        caller, token = first_token(path)
        lines.append(f"  {caller:<9} {token}   ({path})")
    return "\n".join(lines)


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
        sign_in = _sign_in_help(args)
        app = create_app(settings_from(args))
    except (AccessConfigError, ValueError, OSError) as error:  # ValueError: the config's ConfigError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"esteira console on http://{args.host}:{args.port}/ for model {args.config}\n{sign_in}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
