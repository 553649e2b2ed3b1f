"""``esteira promote | rollback``: move the registry's champion alias, and the server labels with it.

The work is tracking.champion's (registry checks, labels on the server then in the file, alias, audit
record); this module reads the flags, finds the registry and prints the planned change.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from serving.labels import LabelChangeError
from tracking.champion import DEFAULT_AUDIT_LOG, actor, change_champion
from tracking.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from tracking.registry import ChampionMove
    from tracking.store import TrackingTarget


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", required=True, help="registered model name (serving.model_name)")
    parser.add_argument("--model_config_file", required=True,
                        help="the models.config the server reads; its stable/canary labels are rewritten")
    parser.add_argument("--config", type=Path, help="use-case YAML whose tracking section names the registry")
    parser.add_argument("--tracking_uri", help="MLflow URI (default: MLFLOW_TRACKING_URI, else --config's store)")
    parser.add_argument("--server", default=None,
                        help="gRPC host:port of a running server to reload now (default: only rewrite the file)")
    parser.add_argument("--token", default=os.environ.get("ESTEIRA_TOKEN"))
    parser.add_argument("--audit_log", default=os.environ.get("ESTEIRA_AUDIT_LOG", DEFAULT_AUDIT_LOG),
                        help=f"hash-chained audit log (default: ESTEIRA_AUDIT_LOG or {DEFAULT_AUDIT_LOG})")
    parser.add_argument("--dry_run", action="store_true", help="print the planned change, change nothing")
    return parser


def _target(args: argparse.Namespace) -> TrackingTarget:
    from tracking.store import LOCAL_FOLDER, TrackingTarget, resolve_target

    if args.tracking_uri:
        return TrackingTarget(args.tracking_uri)
    if args.config is not None:
        from pipeline.config import load_config  # the command reads the use case; the tracking library does not

        config = load_config(args.config)
        return resolve_target(config.tracking.uri, config.pipeline.root / LOCAL_FOLDER)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise TrackingError("no registry given: pass --tracking_uri, --config (the use-case YAML) "
                            "or set MLFLOW_TRACKING_URI")
    return resolve_target(uri, Path.cwd())


def _move(args: argparse.Namespace, action: str, plan: Callable[[MlflowClient], ChampionMove]) -> int:
    from serving.labels import apply_version_labels
    from tracking.store import connect

    try:
        target = _target(args)
        client = connect(target)
        move = plan(client)
        before, after = apply_version_labels(args.model_config_file, args.model, move.labels, dry_run=True)
        print(f"{args.model}: champion {move.before or 'none'} -> {move.after}; "
              f"serving labels {before} -> {after}")
        if args.dry_run:
            return 0
        change_champion(client, move, args.model_config_file, action=action, actor_name=actor(),
                        audit_log=args.audit_log, tracking_uri=target.uri, server=args.server, token=args.token)
    except (TrackingError, LabelChangeError, ValueError) as exc:  # ValueError: the use case's ConfigError too
        return _fail(str(exc))
    return 0


def promote_main(argv: list[str]) -> int:
    """Make a registered version the champion; the server's stable label follows it."""
    parser = _parser("esteira promote", promote_main.__doc__ or "")
    parser.add_argument("--version", required=True, help="registered model version to promote")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from tracking.registry import plan_promote

    return _move(args, "promote", lambda client: plan_promote(client, args.model, args.version))


def rollback_main(argv: list[str]) -> int:
    """Move the champion back to the previous champion; the server's stable label follows it."""
    parser = _parser("esteira rollback", rollback_main.__doc__ or "")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from tracking.registry import plan_rollback

    return _move(args, "rollback", lambda client: plan_rollback(client, args.model))
