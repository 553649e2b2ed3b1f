"""``esteira stack up | down``: the local model server, Prometheus, Alertmanager and MLflow (observability.stack)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from observability.stack import (
    ROOT,
    ServedModel,
    StackConfig,
    StackError,
    is_started,
    start_stack,
    stop_processes,
    stop_stack,
)


def stack_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="esteira stack",
        description="The local stack: a model server, Prometheus, Alertmanager and MLflow on 127.0.0.1.")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "breast_cancer.yaml",
                        help="use case whose newest published version is served and whose MLflow store is opened")
    parser.add_argument("--demo", action="store_true",
                        help="serve two synthetic demo versions (stable 1, canary 2) instead of the config's model")
    parser.add_argument("--state-dir", type=Path, default=ROOT / "outputs" / "stack")
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--grpc-port", type=int, default=8500)
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument("--mlflow-port", type=int, default=5000, help="0: no MLflow server")
    args = parser.parse_args(argv)
    if args.action == "down":
        stopped = stop_stack(args.state_dir)
        print(f"stack: stopped {', '.join(stopped)}" if stopped else f"stack: nothing running from {args.state_dir}")
        return 0
    if is_started(args.state_dir):
        print(f"stack: already started from {args.state_dir}; run `make stack-down` first", file=sys.stderr)
        return 1
    try:
        model = None if args.demo else ServedModel.from_config(args.config)
    except ValueError as error:  # the config's ConfigError names the key and the fix
        print(f"stack: {error}", file=sys.stderr)
        return 2
    config = StackConfig(args.state_dir, args.rest_port, args.grpc_port, args.prometheus_port, args.alertmanager_port,
                         args.mlflow_port or None, model=model)
    try:
        urls = start_stack(config)
    except StackError as exc:
        stop_processes(args.state_dir)
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    width = max(map(len, urls))
    for name, url in urls.items():
        print(f"  {name:<{width}}  {url}")
    print(f"stack: logs in {args.state_dir / 'logs'}; stop with `make stack-down`")
    return 0
