"""The breast-cancer CSV is deterministic and matches the shipped config."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.datasets.breast_cancer import LABEL, write_breast_cancer_csv

REPO = Path(__file__).resolve().parents[2]


def test_written_twice_gives_identical_bytes(tmp_path: Path) -> None:
    first = write_breast_cancer_csv(tmp_path / "a")
    second = write_breast_cancer_csv(tmp_path / "b")
    assert first[1] == second[1]
    assert first[2] == 569


def test_columns_and_labels_match_config(tmp_path: Path) -> None:
    path, _digest, _rows = write_breast_cancer_csv(tmp_path)
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    config = load_config(REPO / "configs" / "breast_cancer.yaml")
    assert set(rows[0]) == set(config.data.features) | {LABEL}
    malignant = sum(int(row[LABEL]) for row in rows)
    assert malignant == 212  # scikit-learn: 212 malignant, 357 benign


def test_cli_prints_sha256(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "cli", "data", "breast-cancer", "--out",
                             str(tmp_path)], capture_output=True, text=True, check=True)
    _path, digest, _rows = write_breast_cancer_csv(tmp_path / "again")
    assert f"sha256 {digest}" in result.stdout
