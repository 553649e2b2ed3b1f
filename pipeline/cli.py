"""The `esteira` command: parses arguments and dispatches to the room that does the work."""
from __future__ import annotations

import os

# Keras 2 everywhere (DESIGN decision 6): must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import importlib
import sys
import traceback
from typing import Callable

# Subcommands owned by other rooms: name -> ("module:function", help). Each function takes the
# remaining argv and returns an exit code; it is imported only when its subcommand runs.
DELEGATED: dict[str, tuple[str, str]] = {
    "serve": ("serving.cli:serve_main", "run the TF Serving-compatible model server"),
    "predict": ("serving.cli:predict_main", "send a prediction request over REST or gRPC"),
    "promote": ("serving.cli:promote_main", "move the stable label to the canary version"),
    "rollback": ("serving.cli:rollback_main", "move the canary label back to the stable version"),
}


def _load(target: str) -> Callable[[list[str]], int]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    if argv and argv[0] in DELEGATED:
        return _load(DELEGATED[argv[0]][0])(argv[1:])
    parser = argparse.ArgumentParser(prog="esteira", description="Esteira: the ML production line.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_target, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    args = parser.parse_args(argv)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
