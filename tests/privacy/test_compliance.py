"""The LGPD report library: access summary from verified audit logs, and the three renderings."""
from __future__ import annotations

import json
from pathlib import Path

from privacy.access import summarize_access
from privacy.audit import AuditLog
from privacy.compliance import ComplianceReport, Gate, write_compliance_report


def write_log(path: Path) -> None:
    with AuditLog(path) as log:
        for caller, version in [("alice", "7"), ("bob", "7"), ("alice", "7"), ("alice", "6"), ("carol", "7")]:
            log.append({"caller": caller, "entrypoint": "REST", "api": "predict", "model": "fraud",
                        "version": version, "status": "OK", "latency_ms": 1.0, "request_bytes": 10})
        log.append({"caller": "alice", "entrypoint": "GRPC", "api": "predict", "model": "other",
                    "version": "7", "status": "OK", "latency_ms": 1.0, "request_bytes": 10})


def tamper(path: Path, line: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = lines[line - 1].replace('"latency_ms":1.0', '"latency_ms":9.0')
    path.write_text("".join(lines))


def make_report(access, no_traffic_by_design: bool = False) -> ComplianceReport:
    return ComplianceReport(no_traffic_by_design=no_traffic_by_design,
        model="fraud", version="7", pushed_at="2026-01-01T00:00:00+00:00", destination="/srv/fraud/7",
        generated_at="2026-01-02T00:00:00+00:00", run={"run_id": "r1", "actor": "ci-bot", "ran_at": "t"},
        data={"spans": [2], "rows_in": 100, "rows_out": 97, "rows_suppressed": 3, "input_sha256": "ab" * 32,
              "date_range": None, "input_file_sha256": {"span-0002/a.csv": "cd" * 32}, "context_sha256": ""},
        privacy={"columns": {"cpf": "drop"}, "policy_sha256": "ef" * 32, "pseudonym_key_id": "kid",
                 "pseudonym_key_source": "env:KEY", "demo_key": False, "k_anonymity": None},
        training={"dp": 1, "dp_epsilon": 3.25, "dp_delta": 1e-5, "dp_l2_norm_clip": 1.0, "dp_noise_multiplier": 1.1},
        gates=[Gate("Evaluator", "auc", 0.93, ">= 0.9", True)], blessings=[],
        access=access, governance={"legal_basis": "art. 7, X", "purpose": "fraud", "controller": "Bank",
                                   "retention": "5 years"})


def test_access_counts_callers_of_the_version_only(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write_log(log)
    access = summarize_access([log, tmp_path / "absent.log"], "fraud", "7")
    assert not access.verified and not access.tampered  # one declared log was never read
    assert [finding.split(":")[0] for finding in access.findings] == [str(tmp_path / "absent.log")]
    assert access.calls == 4
    assert [(c.caller, c.calls) for c in access.callers] == [("alice", 2), ("bob", 1), ("carol", 1)]
    assert [check.status for check in access.logs] == ["ok", "missing"]
    assert access.logs[0].records == 6


def test_tampered_log_fails_verification_naming_the_first_bad_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write_log(log)
    tamper(log, 2)
    access = summarize_access([log], "fraud", "7")
    assert not access.verified
    assert access.logs[0].bad_line == 2 and "line 2" in access.problems[0]
    assert [(c.caller, c.calls) for c in access.callers] == [("alice", 1)]  # only the proven line 1


def test_renderings_state_the_same_facts(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write_log(log)
    paths = write_compliance_report(make_report(summarize_access([log], "fraud", "7")), tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["verified"] is True and data["access"]["calls"] == 4 and data["data"]["rows_suppressed"] == 3
    html = paths["html"].read_text()
    assert 'data-fact="rows_in">100<' in html and "3.2500" in html and "Evidence verified" in html
    card = paths["model_card"].read_text()
    assert "epsilon 3.2500" in card and "alice: 2" in card and "art. 7, X" in card


def test_tampered_report_says_so_in_every_rendering(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write_log(log)
    tamper(log, 3)
    paths = write_compliance_report(make_report(summarize_access([log], "fraud", "7")), tmp_path / "out")
    assert json.loads(paths["json"].read_text())["verified"] is False
    assert "VERIFICATION FAILED" in paths["html"].read_text() and "line 3" in paths["html"].read_text()
    assert "VERIFICATION FAILED" in paths["model_card"].read_text()


def test_a_missing_or_empty_log_is_never_called_verified(tmp_path: Path) -> None:
    """The green sentence is earned only by logs that were read and whose chains hold."""
    empty = tmp_path / "empty.log"
    empty.touch()
    for paths in ([tmp_path / "absent.log"], [empty], []):
        access = summarize_access(paths, "fraud", "7")
        report = make_report(access)
        assert not report.verified and report.verification == "unverified"
        written = write_compliance_report(report, tmp_path / f"out{len(paths)}{paths[0].name if paths else ''}")
        html = written["html"].read_text()
        assert "Evidence verified" not in html and 'class="fail" data-fact="verified">NOT VERIFIED' in html
        assert json.loads(written["json"].read_text())["verification"] == "unverified"
        assert "ACCESS EVIDENCE NOT VERIFIED" in written["model_card"].read_text()
    assert summarize_access([empty], "fraud", "7").logs[0].status == "empty"


def test_no_traffic_by_design_is_stated_not_verified(tmp_path: Path) -> None:
    report = make_report(summarize_access([tmp_path / "absent.log"], "fraud", "7"), no_traffic_by_design=True)
    assert report.verification == "no-traffic-by-design" and not report.verified
    html = write_compliance_report(report, tmp_path / "out")["html"].read_text()
    assert "no inference traffic by design" in html and "Evidence verified" not in html


def test_a_tampered_log_is_not_excused_by_no_traffic_by_design(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write_log(log)
    tamper(log, 2)
    report = make_report(summarize_access([log], "fraud", "7"), no_traffic_by_design=True)
    assert report.verification == "tampered"


def dpo_report(access, **changes) -> ComplianceReport:
    """A report with what a DPO asks for: legal basis per field, retention per store, RIPD, fairness."""
    from pipeline.fairness import group_fairness

    table = group_fairness("age_band", ["18-24"] * 4 + ["65+"] * 4, [0, 0, 0, 1, 0, 0, 0, 1],
                           [0.9, 0.8, 0.1, 0.9, 0.1, 0.2, 0.3, 0.9], 0.5, replicates=50)
    table = type(table)(**{**table.__dict__, "max_false_positive_rate_gap": 0.1})
    base = make_report(access)
    governance = {**base.governance, "ripd": "RIPD-2026-07, DPO office",
                  "retention_schedule": {"training_data": "5 years after last use", "prediction_memory": "24 hours",
                                         "audit_logs": "5 years (CMN 4.893/2021)"}}
    fields = [{"column": "cpf", "treatment": "drop", "legal_basis": "not processed: dropped while reading",
               "source": None},
              {"column": "birth_date", "treatment": "generalize (method age_band) → age_band",
               "legal_basis": "credit protection (art. 7, X)", "source": "governance.field_legal_bases"}]
    values = {**base.__dict__, "governance": governance, "fields": fields, "fairness": [table.report_facts()]}
    values.update(changes)
    return ComplianceReport(**values)


def test_the_report_states_legal_bases_retention_ripd_and_fairness(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write_log(log)
    paths = write_compliance_report(dpo_report(summarize_access([log], "fraud", "7")), tmp_path / "out")
    html = paths["html"].read_text()
    assert ('<tr data-column="birth_date"><td>birth_date</td><td>generalize (method age_band) → age_band</td>'
            '<td class="legal-basis">credit protection (art. 7, X) <small>(governance.field_legal_bases)</small>'
            in html)
    assert 'data-fact="retention_prediction_memory">24 hours<' in html
    assert 'data-fact="retention_audit_logs">5 years (CMN 4.893/2021)<' in html
    assert 'data-fact="ripd">RIPD-2026-07, DPO office<' in html
    assert '<tr data-group="65+"><td>65+</td><td>4</td><td>1</td>' in html
    assert '<td class="false_positive_rate">0.6667</td>' in html  # 18-24: 2 of 3 legitimate rows alerted
    assert "Gate: age_band false-positive-rate gap 0.6667 (18-24 0.6667 vs 65+ 0.0000; 95 % bootstrap" in html
    assert "above the limit 0.1 (evaluation.max_false_positive_rate_gap): failed" in html
    assert "declares no explanation signature" in html and "Contested decisions not counted" in html
    card = paths["model_card"].read_text()
    assert "- `birth_date`: generalize (method age_band) → age_band; legal basis: credit protection (art. 7, X)" in card
    assert ("- Retention schedule (art. 15-16): training data 5 years after last use; prediction memory 24 hours; "
            "access audit logs 5 years (CMN 4.893/2021)") in card
    assert "- Data protection impact report (RIPD, art. 38): RIPD-2026-07, DPO office" in card
    assert "| 18-24 | 4 | 1 | 0.6667 | 0.0000 | 0.5000 |" in card
    assert "- gate: age_band false-positive-rate gap 0.6667" in card and "- Explanations: none" in card
    data = json.loads(paths["json"].read_text())
    assert data["fairness"][0]["gaps"]["false_positive_rate"]["high_group"] == "18-24"
    assert data["fields"][1]["legal_basis"] == "credit protection (art. 7, X)"


def test_a_report_without_the_dpo_declarations_says_what_is_missing(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write_log(log)
    paths = write_compliance_report(make_report(summarize_access([log], "fraud", "7")), tmp_path / "out")
    html = paths["html"].read_text()
    assert 'data-fact="ripd">not named in the config (governance.ripd)<' in html
    assert "No retention schedule per store declared (governance.retention_schedule" in html
    assert "No protected attributes declared (governance.protected_attributes)" in html
    card = paths["model_card"].read_text()
    assert "- Retention schedule per store: not declared (governance.retention_schedule)" in card
    assert "- No protected attributes declared (governance.protected_attributes)." in card


def test_the_report_states_the_explanation_method_its_completeness_and_the_contests(tmp_path: Path) -> None:
    from evidence.governance import automated_decisions
    from privacy.audit import AuditLog
    from privacy.contested_decisions import CONTESTED, REVIEWED

    version_dir = tmp_path / "serving" / "7"
    (version_dir / "assets.extra").mkdir(parents=True)
    (version_dir / "assets.extra" / "esteira_model.json").write_text(json.dumps({"explain": {
        "signature": "explain", "method": "integrated gradients", "quadrature": "Gauss-Legendre", "steps": 32,
        "baseline": "numeric features at their training mean", "features": [{"name": "amount"}, {"name": "channel"}]}}))
    review_log = tmp_path / "console.jsonl"
    log = AuditLog(review_log)  # the console's log: its records carry model and version
    for request, version in (("r1", "7"), ("r2", "7"), ("r3", "7"), ("r4", "6")):
        log.append({"event": CONTESTED, "model": "fraud", "version": version, "request_id": request})
    log.append({"event": REVIEWED, "model": "fraud", "version": "7", "request_id": "r1", "outcome": "overturned"})
    log.append({"event": REVIEWED, "model": "fraud", "version": "7", "request_id": "r2", "outcome": "upheld"})
    blessings = [{"type": "InfraBlessing", "component": "ModelValidator", "blessed": True,
                  "properties": {"explain_completeness_max_gap": 0.0018, "explain_rows": 8}}]
    facts = automated_decisions(version_dir, blessings, str(review_log), "fraud", "7")
    assert facts["contests"] == {"log": str(review_log), "read": True, "contested": 3, "open": 1, "upheld": 1,
                                 "overturned": 1, "problem": None}
    write_log(tmp_path / "audit.log")
    access = summarize_access([tmp_path / "audit.log"], "fraud", "7")
    paths = write_compliance_report(dpo_report(access, automated_decisions=facts), tmp_path / "out")
    html = paths["html"].read_text()
    assert "integrated gradients (Gauss-Legendre, 32 steps) over 2 raw features" in html
    assert 'largest gap <span data-fact="completeness">0.0018</span>' in html
    assert '<span data-fact="contested">3</span> contested; 1 upheld, 1 overturned, 1 awaiting review' in html
    card = paths["model_card"].read_text()
    assert "- Contested decisions: 3 (1 upheld, 1 overturned, 1 open)." in card
    assert "completeness largest gap 0.0018 on 8 served rows" in card


def test_contests_are_not_counted_from_a_missing_or_broken_review_log(tmp_path: Path) -> None:
    from privacy.audit import AuditLog
    from privacy.contested_decisions import CONTESTED, tally

    assert "governance.contest_audit_log" in tally(None, "fraud", "7")["problem"]
    assert "does not exist" in tally(tmp_path / "none.jsonl", "fraud", "7")["problem"]
    review_log = tmp_path / "console.jsonl"
    AuditLog(review_log).append({"event": CONTESTED, "model": "fraud", "version": "7", "request_id": "r1"})
    review_log.write_text(review_log.read_text().replace('"r1"', '"r9"'))
    broken = tally(review_log, "fraud", "7")
    assert broken["read"] is False and broken["contested"] == 0 and "chain is broken" in broken["problem"]


def test_the_data_version_dvc_recorded_is_stated(tmp_path: Path) -> None:
    write_log(tmp_path / "audit.log")
    access = summarize_access([tmp_path / "audit.log"], "fraud", "7")
    base = dpo_report(access)
    dvc = {"md5": "0c9f3e1b5f7a.dir", "path": "data/fraud", "file": "data/fraud.dvc", "matches_working_copy": False}
    paths = write_compliance_report(dpo_report(access, data={**base.data, "dvc": dvc}), tmp_path / "with")
    html = paths["html"].read_text()
    assert '<code data-fact="dvc_md5">0c9f3e1b5f7a.dir</code> of data/fraud (data/fraud.dvc)' in html
    assert "the data read differs from this DVC version" in html
    assert "- Data version (DVC): `0c9f3e1b5f7a.dir` of data/fraud (the data read differs from it)" in (
        paths["model_card"].read_text())
    without = write_compliance_report(base, tmp_path / "without")["html"].read_text()
    assert 'data-fact="dvc_md5">not under DVC<' in without
