"""The console finds the reports the pipeline's GovernanceReport wrote at push time, beside `esteira report`'s."""
from __future__ import annotations

import json
from pathlib import Path

from console.reports import component_reports, report_file, reports_of


def _written_at_push(pipeline_root: Path, execution: int, version: str, drift: bool) -> None:
    folder = component_reports(pipeline_root) / str(execution)
    (folder / "lgpd").mkdir(parents=True)
    (folder / "lgpd" / "lgpd_report.json").write_text(json.dumps({"version": version}))
    (folder / "lgpd" / "lgpd_report.html").write_text(f"version {version}")
    if drift:
        (folder / "drift").mkdir()
        (folder / "drift" / "drift_report.html").write_text("drift")


def test_a_versions_push_time_reports_are_linked_and_served(tmp_path: Path) -> None:
    pipeline_root, reports = tmp_path / "pipeline", tmp_path / "reports"
    _written_at_push(pipeline_root, 4, "100", drift=False)
    _written_at_push(pipeline_root, 9, "200", drift=True)
    (reports / "200").mkdir(parents=True)
    (reports / "200" / "lgpd_report.html").write_text("regenerated")
    links = reports_of(reports, "200", component_reports(pipeline_root))
    assert [(link.kind, link.folder) for link in links] == [("lgpd", "200"), ("lgpd", "run-9"), ("drift", "run-9")]
    assert [link.href for link in links][1:] == ["/reports/run-9/lgpd_report.html", "/reports/run-9/drift_report.html"]
    path, personal = report_file(reports, "run-9", "lgpd_report.html", component_reports(pipeline_root)) or (None, 0)
    assert path is not None and path.read_text() == "version 200" and personal
    assert report_file(reports, "run-9", "drift_report.html", component_reports(pipeline_root))[1] is False


def test_only_known_report_files_are_served(tmp_path: Path) -> None:
    pipeline_root = tmp_path / "pipeline"
    _written_at_push(pipeline_root, 9, "200", drift=False)
    served = component_reports(pipeline_root)
    for folder, name in (("run-9", "../../metadata.db"), ("run-9", "executor_output.pb"), ("run-x", "lgpd_report.html"),
                         ("run-10", "lgpd_report.html")):
        assert report_file(None, folder, name, served) is None, (folder, name)
