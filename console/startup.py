"""How the review console is set up from its flags: a running stack's addresses as defaults, the use
case's paths, the sign-in token files (``esteira console`` parses the flags and calls these)."""
from __future__ import annotations

import argparse
from pathlib import Path

from console.settings import ConsoleSettings
from errors import EsteiraError


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


def sign_in_help(args: argparse.Namespace) -> str:
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
