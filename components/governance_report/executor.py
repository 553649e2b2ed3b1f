"""Executor of GovernanceReport: the evidence comes from MLMD (evidence/governance.py), the
renderers from privacy/compliance.py and evidence/drift_report.py; this only wires them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from errors import EsteiraError
from evidence import governance, lineage, records
from evidence.drift_report import write_drift_report
from privacy.access import current_actor
from privacy.compliance import write_compliance_report

PUSHED_MODEL_KEY = "pushed_model"
REPORT_KEY = "report"
METADATA_PATH_KEY = "metadata_path"
MODEL_NAME_KEY = "model_name"
GOVERNANCE_KEY = "governance"
DRIFT_EXCLUDED_KEY = "drift_excluded"
FIRST_VERSION = "first version"


class AuditVerificationError(EsteiraError, RuntimeError):
    """An access audit log failed its hash-chain check; the report saying so was written first."""


class GovernanceReportExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        pushed_input = artifact_utils.get_single_instance(input_dict[PUSHED_MODEL_KEY])
        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        report.set_string_custom_property(governance.ACTOR_PROPERTY, current_actor())
        push = records.PushRecord.of(pushed_input.mlmd_artifact)
        if not push.pushed:
            reason = push.reason or "not pushed"
            report.set_string_custom_property("status", f"no report: nothing was pushed ({reason})")
            return
        store = lineage.open_store(Path(exec_properties[METADATA_PATH_KEY]))
        model_name = exec_properties[MODEL_NAME_KEY]
        declared = json.loads(exec_properties.get(GOVERNANCE_KEY) or "null")
        audit_logs = [Path(path) for path in (declared or {}).pop("access_audit_logs", [])]
        pushed = store.get_artifacts_by_id([pushed_input.id])[0]
        version = push.version
        folder = Path(report.uri)

        previous = governance.previous_pushed(store, pushed)
        if previous is None:
            report.set_string_custom_property("drift", FIRST_VERSION)
        else:
            before = records.PushRecord.of(previous).version
            drift = governance.drift_between(store, model_name, governance.resolve_end(store, before),
                                             governance.resolve_end(store, version),
                                             excluded=json.loads(exec_properties.get(DRIFT_EXCLUDED_KEY) or "{}"))
            write_drift_report(drift, folder / "drift")
            report.set_string_custom_property("drift", f"version {before} -> {version}: "
                                              f"{len(drift.drifted)} of {len(drift.features)} features drifted")

        # Written at push time: the version has not served a request yet, so its access logs hold nothing
        # of it by design; `esteira report lgpd` regenerates the report once it has traffic.
        compliance = governance.compliance_report(store, pushed, model_name, declared, audit_logs,
                                                  actor=report.get_string_custom_property(governance.ACTOR_PROPERTY),
                                                  no_traffic_by_design=True)
        write_compliance_report(compliance, folder / "lgpd")
        report.set_string_custom_property("version", version)
        report.set_int_custom_property("verified", int(compliance.verified))
        report.set_string_custom_property("verification", compliance.verification)
        report.set_string_custom_property("status", f"reports of version {version} written")
        logging.info("Governance reports of version %s written to %s", version, folder)
        if compliance.access.tampered:  # a just-pushed version has no traffic yet: unread logs are not an error
            raise AuditVerificationError("; ".join(compliance.access.problems)
                                         + f" (the LGPD report saying so is in {folder / 'lgpd'})")
