"""``esteira data DATASET ...``: produce a data set; each data set's module parses the rest of the line."""
from __future__ import annotations

import argparse
import importlib
import sys

DATASETS: dict[str, tuple[str, str]] = {
    "breast-cancer": ("pipeline.datasets.breast_cancer:breast_cancer_main",
                      "write scikit-learn's breast-cancer data set to CSV"),
    "fraud": ("pipeline.datasets.fraud_profiles:fraud_main",
              "simulate card transactions (synthetic, with PII) as one CSV folder per day; "
              "--profile esteira (default) or handbook (the Fraud Detection Handbook's simulator)"),
}


def checkout_main(argv: list[str]) -> int:
    """``esteira data checkout FOLDER --dvc-md5 HASH``: the data version a model names, back on disk."""
    parser = argparse.ArgumentParser(
        prog="esteira data checkout",
        description="restore a DVC-tracked input folder to the version a model names (the data.dvc_md5 of its "
                    "MLflow run, the DVC hash in its LGPD report), then `esteira run` retrains on it")
    parser.add_argument("folder", help="the input folder, tracked by `dvc add` (its .dvc file beside it)")
    parser.add_argument("--dvc-md5", required=True, help="the recorded DVC hash (a folder's ends in .dir)")
    args = parser.parse_args(argv)
    from orchestration.data_checkout import DataCheckoutError, checkout_data_version
    from privacy.data_version import DataVersionError

    try:
        version = checkout_data_version(args.folder, args.dvc_md5)
    except (DataCheckoutError, DataVersionError) as error:
        print(f"esteira data checkout: {error}", file=sys.stderr)
        return 1
    print(f"esteira data checkout: {version.path} holds DVC version {version.current_md5} ({version.dvc_file})")
    return 0


def data_main(argv: list[str]) -> int:
    if argv and argv[0] == "checkout":
        return checkout_main(argv[1:])
    if argv and argv[0] in DATASETS:
        module_name, function_name = DATASETS[argv[0]][0].split(":")
        return int(getattr(importlib.import_module(module_name), function_name)(argv[1:]))
    parser = argparse.ArgumentParser(prog="esteira data", description="produce a data set")
    parser.add_argument("dataset", choices=[*sorted(DATASETS), "checkout"], help="; ".join(
        f"{name}: {help_text}" for name, (_target, help_text) in DATASETS.items())
        + "; checkout: restore a DVC-tracked folder to a recorded version")
    parser.parse_args(argv)  # no known data set: prints the usage and exits 2
    return 2
