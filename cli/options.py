"""Arguments several commands share: the use-case YAML and its ``--set`` overrides."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from errors import ConfigError

# pipeline.config imports Beam (seconds): only the commands that read a config load it.
if TYPE_CHECKING:
    from pipeline.config import UseCaseConfig


def with_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="use-case YAML, e.g. configs/breast_cancer.yaml")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.train_steps=50 (repeatable)")


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set training.train_steps=50")
    return key, yaml.safe_load(value)


def config_from(args: argparse.Namespace) -> UseCaseConfig:
    from pipeline.config import load_config

    config = load_config(args.config)
    if getattr(args, "set", None):
        config = config.with_overrides(dict(parse_override(item) for item in args.set))
    return config


def reports_folder(args: argparse.Namespace, config: UseCaseConfig, name: str) -> Path:
    """--out, else a reports/ folder beside the pipeline root (outputs/<use case>/reports/<name>)."""
    return args.out or config.pipeline.root.parent / "reports" / name
