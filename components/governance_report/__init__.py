"""Governance reports after every push: drift against the previous version, LGPD report, model card."""
from components.governance_report.component import GovernanceReport, GovernanceReportArtifact

__all__ = ["GovernanceReport", "GovernanceReportArtifact"]
