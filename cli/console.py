"""``esteira console``: serve the model review console on 127.0.0.1 (uvicorn), for one use case."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from console.settings import DEFAULT_METRICS_PATH
from tracking.champion import DEFAULT_AUDIT_LOG  # the same log `esteira promote` appends to


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


def console_main(argv: list[str]) -> int:
    """Compare model versions, read their evidence, try predictions, promote and roll back (approvers)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    import uvicorn

    from console.access import AccessConfigError
    from console.app import create_app
    from console.startup import settings_from, sign_in_help

    try:
        sign_in = sign_in_help(args)
        app = create_app(settings_from(args))
    except (AccessConfigError, ValueError, OSError) as error:  # ValueError: the config's ConfigError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"esteira console on http://{args.host}:{args.port}/ for model {args.config}\n{sign_in}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
