"""``esteira COMMAND ...``: names every command and hands the rest of the line to its module.

Each command module is imported only when its command runs, so ``esteira serve`` starts without the
pipeline stack (Beam, TFX), which the serving image lacks.
"""
from __future__ import annotations

import os

# Keras 2 everywhere (DESIGN decision 6): must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable

from errors import ConfigError

# name -> ("module:function", help). Each function takes the rest of the command line and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("cli.data:data_main", "produce a data set (see `esteira data -h`)"),
    "run": ("cli.pipeline:run_main", "run the TFX pipeline of a use case"),
    "gate": ("cli.pipeline:gate_main",
             "may the latest run's model be deployed? blessed, finite weights, AUC beats the champion"),
    "compile": ("cli.pipeline:compile_main", "compile the pipeline for an orchestrator"),
    "report": ("cli.report:report_main",
               "from MLMD: the latest run (default), a drift report, or a version's LGPD report"),
    "schema": ("cli.schema:schema_main", "curate the data schema of a use case"),
    "serve": ("cli.serve:serve_main", "run the TF Serving-compatible model server"),
    "predict": ("cli.serve:predict_main", "send a prediction request over REST or gRPC"),
    "demo-model": ("cli.serve:demo_model_main", "export the small demo SavedModel the server's tests and docs use"),
    "promote": ("cli.registry:promote_main",
                "make a registered version the champion (MLflow alias); the server's stable label follows"),
    "rollback": ("cli.registry:rollback_main",
                 "move the champion back to the previous one; the server's stable label follows"),
    "audit": ("cli.audit:audit_main", "verify a hash-chained audit log (`esteira audit verify FILE`)"),
    "dashboard": ("cli.dashboard:dashboard_main", "render the dashboard's panels from Prometheus as static HTML"),
    "grafana": ("cli.dashboard:grafana_main", "write the Grafana dashboard JSON from the panels (--check: compare)"),
    "console": ("cli.console:console_main",
                "the model review console: compare versions, read their evidence, try predictions, promote"),
    "stack": ("cli.stack:stack_main", "start or stop the local model server, Prometheus, Alertmanager and MLflow"),
    "deploy": ("cli.deploy:deploy_main", "Kubernetes manifests: render, check, pin images, canary steps"),
    "images": ("cli.images:images_main", "build the serving and pipeline images with Podman, or their wheelhouses"),
    "airflow": ("cli.orchestration:airflow_main", "start or stop the local Airflow scheduler and web server"),
    "alert-trigger": ("cli.orchestration:alert_trigger_main",
                      "turn Alertmanager's canary alerts into Airflow DAG runs (a webhook on 127.0.0.1)"),
}


def _load(target: str) -> Callable[[list[str]], int]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _parser() -> argparse.ArgumentParser:
    """Only for `esteira -h` and for a command line naming no known command."""
    parser = argparse.ArgumentParser(prog="esteira", description="Esteira: the ML production line.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_target, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        if argv and argv[0] in COMMANDS:
            return _load(COMMANDS[argv[0]][0])(argv[1:])
        _parser().parse_args(argv)  # prints the usage and exits 2 (or 0 for -h)
        return 2
    except KeyboardInterrupt:
        print("esteira: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one line for users; --debug shows where
        if debug:
            traceback.print_exc()
        if isinstance(error, ConfigError):
            print(f"esteira: error: {error}", file=sys.stderr)
            return 2
        if not debug:
            print(f"esteira: error: {type(error).__name__}: {error} (run with --debug for the traceback)",
                  file=sys.stderr)
        return 1
