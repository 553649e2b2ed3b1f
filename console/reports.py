"""The governance reports of a version, found where they were written and served read-only.

Two writers: `esteira report drift|lgpd` (``<reports>/<version>/``, ``<reports>/drift-<from>-<to>/``)
and the pipeline's GovernanceReport component at push time (``<pipeline root>/GovernanceReport/
report/<execution>/lgpd|drift/``, named ``run-<execution>`` here). LGPD reports name callers of the
inference API, so every view of them is audited; drift reports hold distributions only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from evidence.drift_report import REPORT_HTML as DRIFT_HTML
from evidence.drift_report import REPORT_JSON as DRIFT_JSON
from privacy.compliance import MODEL_CARD
from privacy.compliance import REPORT_HTML as LGPD_HTML
from privacy.compliance import REPORT_JSON as LGPD_JSON

LGPD_FILES = (LGPD_HTML, LGPD_JSON, MODEL_CARD)
DRIFT_FILES = (DRIFT_HTML, DRIFT_JSON)
RUN_PREFIX = "run-"  # a GovernanceReport execution's folder, as the console's URLs name it


def component_reports(pipeline_root: Path) -> Path:
    """Where the GovernanceReport component writes one folder per execution (the TFX artifact layout)."""
    return Path(pipeline_root) / "GovernanceReport" / "report"


@dataclass(frozen=True)
class ReportLink:
    kind: str  # lgpd | drift
    folder: str
    title: str

    @property
    def personal_data(self) -> bool:
        return self.kind == "lgpd"

    @property
    def href(self) -> str:
        return f"/reports/{self.folder}/{LGPD_HTML if self.kind == 'lgpd' else DRIFT_HTML}"


def reports_of(reports_folder: Path | None, serving_version: str,
               pipeline_reports: Path | None = None) -> list[ReportLink]:
    """The version's LGPD reports (regenerated and written at push), and every drift report it ends."""
    links = []
    if reports_folder is not None and Path(reports_folder).is_dir():
        if (Path(reports_folder) / serving_version / LGPD_HTML).is_file():
            links.append(ReportLink("lgpd", serving_version, f"LGPD report of version {serving_version}"))
        for folder in sorted(Path(reports_folder).glob("drift-*")):
            ends = folder.name.removeprefix("drift-").split("-")
            if serving_version in ends and (folder / DRIFT_HTML).is_file():
                links.append(ReportLink("drift", folder.name, f"Drift {' → '.join(ends)}"))
    return links + _written_at_push(pipeline_reports, serving_version)


def _written_at_push(pipeline_reports: Path | None, serving_version: str) -> list[ReportLink]:
    if pipeline_reports is None or not Path(pipeline_reports).is_dir():
        return []
    links = []
    for report_json in sorted(Path(pipeline_reports).glob(f"*/lgpd/{LGPD_JSON}")):
        try:
            version = str(json.loads(report_json.read_text()).get("version"))
        except (OSError, ValueError):
            continue  # a report being written, or not one of ours: nothing to link
        execution = report_json.parent.parent
        if version != serving_version or not execution.name.isdigit():
            continue
        folder = f"{RUN_PREFIX}{execution.name}"
        if (execution / "lgpd" / LGPD_HTML).is_file():
            links.append(ReportLink("lgpd", folder, f"LGPD report of version {version}, written at push"))
        if (execution / "drift" / DRIFT_HTML).is_file():
            links.append(ReportLink("drift", folder, f"Drift from the previous version → {version}, at push"))
    return links


def report_file(reports_folder: Path | None, folder: str, name: str,
                pipeline_reports: Path | None = None) -> tuple[Path, bool] | None:
    """The file and whether it bears personal data, only for report files this module knows (no other path)."""
    if "/" in folder or folder.startswith("."):
        return None
    if folder.startswith(RUN_PREFIX) and folder.removeprefix(RUN_PREFIX).isdigit():
        if pipeline_reports is None or name not in (*LGPD_FILES, *DRIFT_FILES):
            return None
        kind = "lgpd" if name in LGPD_FILES else "drift"
        path = Path(pipeline_reports) / folder.removeprefix(RUN_PREFIX) / kind / name
        return (path, kind == "lgpd") if path.is_file() else None
    if reports_folder is None:
        return None
    if folder.startswith("drift-") and name in DRIFT_FILES:
        personal = False
    elif folder.isdigit() and name in LGPD_FILES:
        personal = True
    else:
        return None
    path = Path(reports_folder) / folder / name
    return (path, personal) if path.is_file() else None
