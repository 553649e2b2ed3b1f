"""The review channel for contested automated decisions (LGPD art. 20): a data subject's contest of a
decision is recorded, a human approver reviews it and records the outcome, and the case can be exported.

Everything a case holds comes from evidence that already exists: the decision itself from the model
server's prediction memory (``:explain`` with the decision's request id answers the version, the
pseudonymized inputs, the score and the explanation), the decision's access audit line from the server's
hash-chained audit log, and the contest and the outcome from the console's own hash-chained audit log,
where this module writes them. Nothing is kept in a second store.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from errors import EsteiraError
from privacy.audit import read_records
from privacy.contested_decisions import CONTESTED, OUTCOMES, REVIEWED

TIMEOUT_SECONDS = 30.0
MAX_REASON = 2000


class ContestError(EsteiraError, ValueError):
    """A contest or an outcome that cannot be recorded; the message says what to send instead."""


@dataclass(frozen=True)
class DecisionAudit:
    """Where the decision's own access audit line is: the log, its sequence number and its hash."""

    log: str
    seq: int
    hash: str
    record: dict[str, Any]


def check_request_id(value: str) -> str:
    from serving.observability.feedback import REQUEST_ID_PATTERN

    value = value.strip()
    if not REQUEST_ID_PATTERN.fullmatch(value):
        raise ContestError("a decision is looked up by the X-Request-Id its prediction answered with: 1 to 128 "
                           "letters, digits, '.', '_', ':' or '-'")
    return value


def explain_decision(server_url: str, model: str, request_id: str, token: str | None) -> dict[str, Any]:
    """The server's ``:explain`` of the remembered decision; ``{"problem": ...}`` when it cannot answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(f"{server_url.rstrip('/')}/v1/models/{model}:explain", json={"request_id": request_id},
                              headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        return {"problem": f"the model server at {server_url} did not answer ({error})"}
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:300]}
    if response.status_code != 200:
        return {"problem": f"the model server answered {response.status_code}: {body.get('error', body)}"}
    return body


def decision_audit_line(logs: Iterable[Path], request_id: str) -> DecisionAudit | None:
    """The server's access audit line of the Predict that answered ``request_id`` (first match, chain verified)."""
    import json

    for log in logs:
        if not Path(log).is_file():
            continue
        list(read_records(log))  # verifies the whole chain before a line of it is cited
        with open(log, encoding="utf-8") as handle:
            for line in handle:
                entry = json.loads(line)
                record = entry.get("record", {})
                if record.get("request_id") == request_id and record.get("api") in ("predict", "classify", "regress"):
                    return DecisionAudit(str(log), int(entry["seq"]), str(entry["hash"]), record)
    return None


def case_events(console_log: Path, request_id: str | None = None) -> list[dict[str, Any]]:
    """The contest and outcome records of the console's audit log, oldest first (one case, or all)."""
    if not Path(console_log).is_file():
        return []
    return [record for record in read_records(console_log)
            if record.get("event") in (CONTESTED, REVIEWED)
            and (request_id is None or record.get("request_id") == request_id)]


def open_cases(console_log: Path) -> list[dict[str, Any]]:
    """Contests without an outcome yet: the reviewers' queue."""
    events = case_events(console_log)
    decided = {event["request_id"] for event in events if event["event"] == REVIEWED}
    return [event for event in events if event["event"] == CONTESTED and event["request_id"] not in decided]


def contest_details(request_id: str, channel: str, explained: dict[str, Any],
                    audit_line: DecisionAudit | None) -> dict[str, Any]:
    """What the contest record carries: the decision's version, score and audit line."""
    if "problem" in explained:
        raise ContestError(f"the decision {request_id} cannot be contested here: {explained['problem']}")
    decision = explained["decision"]
    return {"request_id": request_id, "channel": channel.strip()[:200] or "not stated",
            "version": decision["version"], "scores": decision["scores"], "classes": decision["classes"],
            "decision_audit": _audit_reference(audit_line)}


def outcome_details(request_id: str, outcome: str, reason: str, explained: dict[str, Any],
                    audit_line: DecisionAudit | None, events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the outcome record carries; refuses an outcome without a contest, twice, or without a reason."""
    if outcome not in OUTCOMES:
        raise ContestError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    reason = reason.strip()
    if not reason:
        raise ContestError("state the reason for the outcome: the data subject's answer is built from it")
    if len(reason) > MAX_REASON:
        raise ContestError(f"the reason has {len(reason)} characters; keep it to {MAX_REASON}")
    if not any(event["event"] == CONTESTED for event in events):
        raise ContestError(f"no contest of {request_id} is recorded; record the contest first")
    if any(event["event"] == REVIEWED for event in events):
        raise ContestError(f"the contest of {request_id} already has an outcome; a case is decided once")
    decision = explained.get("decision", {})
    return {"request_id": request_id, "outcome": outcome, "reason": reason, "version": decision.get("version"),
            "scores": decision.get("scores"), "decision_audit": _audit_reference(audit_line)}


def _audit_reference(line: DecisionAudit | None) -> dict[str, Any] | None:
    return None if line is None else {"log": line.log, "seq": line.seq, "hash": line.hash}


def case_export(model: str, request_id: str, explained: dict[str, Any], audit_line: DecisionAudit | None,
                events: list[dict[str, Any]]) -> dict[str, Any]:
    """The case as JSON for the data subject's answer: the decision, its explanation, the contest, the outcome."""
    return {
        "model": model, "request_id": request_id,
        "decision": explained.get("decision"), "explanation": {
            "method": explained.get("method"), "decision_threshold": explained.get("decision_threshold"),
            "predictions": explained.get("predictions")} if "problem" not in explained else None,
        "explanation_problem": explained.get("problem"),
        "decision_audit": _audit_reference(audit_line),
        "contest": next((e for e in events if e["event"] == CONTESTED), None),
        "outcome": next((e for e in events if e["event"] == REVIEWED), None),
    }
