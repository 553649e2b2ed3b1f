"""Contested automated decisions (LGPD art. 20) of one model version, tallied from the review audit log.

The console records a data subject's contest and a reviewer's outcome as events of its hash-chained
audit log (`console/contests.py`); the LGPD report states how many decisions of a version were
contested and how they ended, and it counts them only from a log whose chain holds.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from privacy.audit import AuditLogError, read_records

CONTESTED, REVIEWED = "decision.contested", "decision.reviewed"
OUTCOMES = ("upheld", "overturned")


def tally(log: str | Path | None, model: str, version: str) -> dict[str, Any]:
    """{log, read, contested, upheld, overturned, open, problem} for ``model`` ``version``; ``problem`` says
    why nothing could be counted (no log declared, missing, or a broken chain)."""
    facts: dict[str, Any] = {"log": str(log) if log else None, "read": False, "contested": 0, "open": 0,
                             **dict.fromkeys(OUTCOMES, 0), "problem": None}
    if not log:
        facts["problem"] = ("no review log declared (governance.contest_audit_log, the console's --audit_log): "
                            "contested decisions cannot be counted")
        return facts
    if not Path(log).is_file():
        facts["problem"] = f"the review log {log} does not exist: no contest was recorded there"
        return facts
    try:
        events = [record for record in read_records(log) if record.get("event") in (CONTESTED, REVIEWED)
                  and record.get("model") == model and str(record.get("version")) == str(version)]
    except AuditLogError as error:
        facts["problem"] = f"the review log's chain is broken, nothing counted: {error}"
        return facts
    contested = {event["request_id"] for event in events if event["event"] == CONTESTED}
    outcomes = Counter(event.get("outcome") for event in events if event["event"] == REVIEWED
                       and event["request_id"] in contested)
    decided = {event["request_id"] for event in events if event["event"] == REVIEWED}
    facts.update(read=True, contested=len(contested), open=len(contested - decided),
                 **{outcome: outcomes.get(outcome, 0) for outcome in OUTCOMES})
    return facts
