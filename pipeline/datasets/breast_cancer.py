"""The scikit-learn breast-cancer data set as a CSV: real data that ships with scikit-learn, no download."""
from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

from pipeline.datasets.files import publish

LABEL = "malignant"
FILE_NAME = "breast_cancer.csv"


def column_name(sklearn_name: str) -> str:
    """'mean radius' -> 'mean_radius': names that are valid TF feature keys and YAML keys."""
    return sklearn_name.strip().replace(" ", "_")


def write_breast_cancer_csv(out_dir: Path) -> tuple[Path, str, int]:
    """Write the data set deterministically; return (file, SHA-256 of its bytes, row count).

    scikit-learn encodes benign as 1; the label here is ``malignant`` (1 = malignant), the positive
    class a screening model is asked to find.
    """
    from sklearn.datasets import load_breast_cancer

    dataset = load_breast_cancer()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FILE_NAME
    header = [column_name(name) for name in dataset.feature_names] + [LABEL]
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row, target in zip(dataset.data, dataset.target, strict=True):
            writer.writerow([repr(float(value)) for value in row] + [int(target == 0)])
    publish(partial, path)  # the same bytes again: the file (and its mtime) stays as it was
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path, digest, len(dataset.target)


def breast_cancer_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="esteira data breast-cancer",
                                     description="Write the breast-cancer data set to CSV.")
    parser.add_argument("--out", type=Path, default=Path("data/breast_cancer"), help="output folder")
    args = parser.parse_args(argv)
    path, digest, rows = write_breast_cancer_csv(args.out)
    print(f"wrote {rows} rows to {path}")
    print(f"sha256 {digest}")
    return 0
