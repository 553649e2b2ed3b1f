"""The governance reports `esteira report drift|lgpd` wrote, found by folder name and served read-only.

LGPD reports (``<reports>/<version>/``) name callers of the inference API, so every view of them
is audited; drift reports (``<reports>/drift-<from>-<to>/``) hold distributions only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.drift_report import REPORT_HTML as DRIFT_HTML
from pipeline.drift_report import REPORT_JSON as DRIFT_JSON
from privacy.compliance import MODEL_CARD
from privacy.compliance import REPORT_HTML as LGPD_HTML
from privacy.compliance import REPORT_JSON as LGPD_JSON

LGPD_FILES = (LGPD_HTML, LGPD_JSON, MODEL_CARD)
DRIFT_FILES = (DRIFT_HTML, DRIFT_JSON)


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


def reports_of(reports_folder: Path | None, serving_version: str) -> list[ReportLink]:
    """The LGPD report of the version and every drift report with the version at one end."""
    if reports_folder is None or not Path(reports_folder).is_dir():
        return []
    links = []
    if (Path(reports_folder) / serving_version / LGPD_HTML).is_file():
        links.append(ReportLink("lgpd", serving_version, f"LGPD report of version {serving_version}"))
    for folder in sorted(Path(reports_folder).glob("drift-*")):
        ends = folder.name.removeprefix("drift-").split("-")
        if serving_version in ends and (folder / DRIFT_HTML).is_file():
            links.append(ReportLink("drift", folder.name, f"Drift {' → '.join(ends)}"))
    return links


def report_file(reports_folder: Path | None, folder: str, name: str) -> tuple[Path, bool] | None:
    """The file and whether it bears personal data, only for report files this module knows (no other path)."""
    if reports_folder is None or "/" in folder or folder.startswith("."):
        return None
    if folder.startswith("drift-") and name in DRIFT_FILES:
        personal = False
    elif folder.isdigit() and name in LGPD_FILES:
        personal = True
    else:
        return None
    path = Path(reports_folder) / folder / name
    return (path, personal) if path.is_file() else None
