"""benchmarks/pipeline/capacity.md is what capacity.py computes from the committed measurements, and the
script reads the six-months results layout too (so item 1's figures regenerate it)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "pipeline" / "capacity.py"


@pytest.fixture(scope="module")
def capacity():
    spec = importlib.util.spec_from_file_location("capacity_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_committed_table_is_current(capacity, tmp_path: Path) -> None:
    committed = json.loads((SCRIPT.parent / "capacity.json").read_text())
    assert capacity.main(["--results", str(REPO / committed["source"]), "--entry", committed["entry"],
                          "--out", str(tmp_path)]) == 0
    assert (tmp_path / "capacity.md").read_text() == (SCRIPT.parent / "capacity.md").read_text(), \
        "capacity.md is stale: run the command at its top"


def test_six_months_layout_scales_beam_components_and_keeps_fixed_ones(capacity, tmp_path: Path) -> None:
    results = {"six_months": {"after": {
        "date": "2026-12-07", "rows_read": 2_000_000, "rows_emitted": 1_000_000,
        "nodes": {"AnonymizingExampleGen": {"seconds": 200.0, "peak_rss_mb": 3000.0},
                  "Transform": {"seconds": 100.0, "peak_rss_mb": 5000.0},
                  "Trainer": {"seconds": 50.0, "peak_rss_mb": 2500.0}}}}, "daily": {}}
    path = tmp_path / "scale.json"
    path.write_text(json.dumps(results))
    measured = capacity.load_measured(path, "six_months/after")
    assume = capacity.Assumptions(parallel_efficiency=0.5, beam_job_overhead_s=0.0, slots=10)
    row = capacity.capacity(measured, 20_000_000, assume)
    # ExampleGen: 200 s per 2 M rows read -> x10 -> 2000 core-s / 0.5; Transform: per 1 M examples, x10 too
    assert row["components"]["AnonymizingExampleGen"]["core_hours"] == pytest.approx(4000 / 3600)
    assert row["components"]["Transform"]["core_hours"] == pytest.approx(2000 / 3600)
    assert row["components"]["Trainer"]["wall_h"] == pytest.approx(50 / 3600)  # fixed steps, not rows
    assert row["wall_h_on_layout"] == pytest.approx((6000 / 10 + 50) / 3600)
    assert row["peak_measured_mb"] == 5000.0


def test_an_unknown_entry_names_the_ones_there(capacity, tmp_path: Path) -> None:
    path = tmp_path / "scale.json"
    path.write_text(json.dumps({"six_months": {"before": {}}, "daily": {}}))
    with pytest.raises(SystemExit, match=r"no entry 'six_months/after'; entries: six_months/before"):
        capacity.load_measured(path, "six_months/after")
