"""The LGPD compliance report of one pushed model version, and its model card.

The facts are gathered elsewhere (from MLMD, by ``evidence/governance.py``) and handed over as a
:class:`ComplianceReport`; this module only shapes them into JSON, HTML and Markdown, so it needs
neither TFX nor a metadata store and every rendering states the same facts.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from privacy.access import AccessSummary

TEMPLATES = Path(__file__).with_name("templates")
REPORT_JSON = "lgpd_report.json"
REPORT_HTML = "lgpd_report.html"
MODEL_CARD = "model_card.md"


@dataclass(frozen=True)
class Gate:
    """One check the version passed (or failed) on its way to production."""

    component: str
    check: str
    value: float | str | None
    threshold: str
    passed: bool | None


@dataclass(frozen=True)
class ComplianceReport:
    model: str
    version: str
    pushed_at: str
    destination: str
    generated_at: str
    run: dict[str, Any]
    data: dict[str, Any]
    privacy: dict[str, Any] | None
    training: dict[str, Any]
    gates: list[Gate]
    blessings: list[dict[str, Any]]
    access: AccessSummary
    governance: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)
    # Declared by whoever generates the report: the version has served no traffic on purpose (e.g. it was
    # just pushed, or is held back), so missing or empty access logs are expected, not a finding.
    no_traffic_by_design: bool = False
    evaluation: dict[str, float] = field(default_factory=dict)  # overall-slice figures of the eval split
    # each raw column: treatment and legal basis (its own, the processing's, or none when dropped)
    fields: list[dict[str, Any]] = field(default_factory=list)
    # per protected attribute: groups' rates and AP, largest gaps with intervals, the gap gate (evidence/fairness.py)
    fairness: list[dict[str, Any]] = field(default_factory=list)
    # art. 20: {"explanation": method, steps, measured completeness (or None),
    #           "contests": privacy.contested_decisions.tally}
    automated_decisions: dict[str, Any] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """Every declared access audit log was read and its hash chain holds (see AccessSummary.verified)."""
        return self.access.verified

    @property
    def verification(self) -> str:
        """One word for the access evidence: verified, tampered, no-traffic-by-design or unverified."""
        if self.access.tampered:
            return "tampered"
        if self.access.verified:
            return "verified"
        if self.no_traffic_by_design and self.access.logs and not self.access.callers:
            return "no-traffic-by-design"
        return "unverified"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["verified"] = self.verified
        data["verification"] = self.verification
        data["access"]["verified"] = self.access.verified
        data["access"]["findings"] = self.access.findings
        return data


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html"]),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(report: ComplianceReport) -> str:
    return _environment().get_template("lgpd_report.html.j2").render(report=report)


def render_model_card(report: ComplianceReport) -> str:
    return _environment().get_template("model_card.md.j2").render(report=report)


def write_compliance_report(report: ComplianceReport, folder: Path) -> dict[str, Path]:
    """Write the JSON, HTML and model card into ``folder``; returns the paths by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / REPORT_JSON, "html": folder / REPORT_HTML, "model_card": folder / MODEL_CARD}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str) + "\n")
    paths["html"].write_text(render_html(report))
    paths["model_card"].write_text(render_model_card(report))
    return paths
