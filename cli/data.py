"""``esteira data DATASET ...``: produce a data set; each data set's module parses the rest of the line."""
from __future__ import annotations

import argparse
import importlib

DATASETS: dict[str, tuple[str, str]] = {
    "breast-cancer": ("pipeline.datasets.breast_cancer:breast_cancer_main",
                      "write scikit-learn's breast-cancer data set to CSV"),
    "fraud": ("pipeline.datasets.fraud_profiles:fraud_main",
              "simulate card transactions (synthetic, with PII) as one CSV folder per day; "
              "--profile esteira (default) or handbook (the Fraud Detection Handbook's simulator)"),
}


def data_main(argv: list[str]) -> int:
    if argv and argv[0] in DATASETS:
        module_name, function_name = DATASETS[argv[0]][0].split(":")
        return int(getattr(importlib.import_module(module_name), function_name)(argv[1:]))
    parser = argparse.ArgumentParser(prog="esteira data", description="produce a data set")
    parser.add_argument("dataset", choices=sorted(DATASETS), help="; ".join(
        f"{name}: {help_text}" for name, (_target, help_text) in DATASETS.items()))
    parser.parse_args(argv)  # no known data set: prints the usage and exits 2
    return 2
