"""Data commands leave a file untouched when its content would not change, and the Pusher's identity check
compares what defines a model, so a rerun on the same data publishes nothing new."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from components.serving_pusher.executor import directory_digest
from pipeline.datasets.breast_cancer import write_breast_cancer_csv
from pipeline.datasets.files import publish, remove_spans_after
from pipeline.datasets.handbook_simulator import HandbookConfig, simulate

LONG_AGO = 1_000_000_000  # an mtime no write of this test could give


def _age(path: Path) -> None:
    os.utime(path, ns=(LONG_AGO * 10**9, LONG_AGO * 10**9))


def test_the_breast_cancer_file_is_rewritten_only_when_its_bytes_change(tmp_path: Path) -> None:
    path, digest, _ = write_breast_cancer_csv(tmp_path)
    _age(path)
    assert write_breast_cancer_csv(tmp_path)[1] == digest
    assert path.stat().st_mtime_ns == LONG_AGO * 10**9 and not list(tmp_path.glob("*.partial"))
    path.write_text(path.read_text().replace("\n1", "\n0", 1))  # someone edited it: the command restores it
    assert write_breast_cancer_csv(tmp_path)[1] == digest and path.stat().st_mtime_ns != LONG_AGO * 10**9


def test_a_handbook_rerun_keeps_unchanged_spans_and_drops_days_beyond_the_new_range(tmp_path: Path) -> None:
    config = HandbookConfig(customers=30, terminals=60, days=4, seed=3)
    simulate(config, tmp_path, progress=False)
    spans = sorted(tmp_path.glob("span-*/*.csv"))
    assert len(spans) == 4
    for span in spans:
        _age(span)
    simulate(config, tmp_path, progress=False, overwrite=True)
    assert sorted(tmp_path.glob("span-*/*.csv")) == spans
    assert all(span.stat().st_mtime_ns == LONG_AGO * 10**9 for span in spans)
    simulate(HandbookConfig(customers=30, terminals=60, days=2, seed=3), tmp_path, progress=False, overwrite=True)
    assert sorted(path.parent.name for path in tmp_path.glob("span-*/*.csv")) == ["span-0001", "span-0002"]


def test_publish_replaces_a_different_file_atomically(tmp_path: Path) -> None:
    target, partial = tmp_path / "a.csv", tmp_path / "a.csv.partial"
    target.write_text("old\n")
    partial.write_text("new\n")
    assert publish(partial, target) and target.read_text() == "new\n" and not partial.exists()
    (tmp_path / "span-0002").mkdir()
    (tmp_path / "span-0010").mkdir()
    assert remove_spans_after(tmp_path, 2) == [tmp_path / "span-0010"]


def _saved_model(root: Path, variables: bytes, fingerprint: bytes) -> Path:
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"graph")
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(variables)
    (root / "fingerprint.pb").write_bytes(fingerprint)
    return root


def test_versions_differing_only_in_the_per_save_fingerprint_are_the_same_model(tmp_path: Path) -> None:
    served = _saved_model(tmp_path / "1", b"weights", b"saved at 10:00")
    retrained = _saved_model(tmp_path / "candidate", b"weights", b"saved at 11:00")
    changed = _saved_model(tmp_path / "other", b"weights2", b"saved at 10:00")
    assert directory_digest(served) == directory_digest(retrained)
    assert directory_digest(served) != directory_digest(changed)
    shutil.rmtree(retrained / "variables")
    assert directory_digest(served) != directory_digest(retrained)
