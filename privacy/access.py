"""Who called a model version, read from the serving access audit logs after verifying their hash chain.

A log whose chain breaks is reported as such, naming its first bad line; only the lines before that
line are counted (they are still proven), so a tampered log never silently feeds the report.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import overload

from privacy.audit import AuditLogError, log_set, verify


@overload
def iso_utc(seconds: float) -> str: ...
@overload
def iso_utc(seconds: None) -> None: ...
def iso_utc(seconds: float | None) -> str | None:
    """Unix seconds as an ISO-8601 UTC string (None stays None)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class LogCheck:
    """One audit log's verification: ok, missing or empty (nothing read), or broken at ``bad_line``."""

    path: str
    status: str  # ok | missing | empty | tampered
    records: int = 0
    head: str = ""
    bad_line: int | None = None
    problem: str = ""


@dataclass(frozen=True)
class CallerAccess:
    caller: str
    calls: int
    first: str
    last: str
    apis: dict[str, int]
    statuses: dict[str, int]


@dataclass(frozen=True)
class AccessSummary:
    """Calls of one model version over every declared log, per caller, with the time range."""

    model: str
    version: str
    logs: list[LogCheck] = field(default_factory=list)
    calls: int = 0
    first: str | None = None
    last: str | None = None
    callers: list[CallerAccess] = field(default_factory=list)

    @property
    def tampered(self) -> bool:
        """A log's hash chain breaks: evidence was altered (never excused)."""
        return any(log.status == "tampered" for log in self.logs)

    @property
    def unread(self) -> list[LogCheck]:
        """Declared logs with nothing to verify: missing or without a single record."""
        return [log for log in self.logs if log.status in ("missing", "empty")]

    @property
    def verified(self) -> bool:
        """True only when at least one log was declared and every one was read and its chain holds:
        a report may call evidence verified only over evidence it actually read."""
        return bool(self.logs) and all(log.status == "ok" for log in self.logs)

    @property
    def problems(self) -> list[str]:
        return [log.problem for log in self.logs if log.status == "tampered"]

    @property
    def findings(self) -> list[str]:
        """Why the access evidence is not verified, one line per log (empty when it is)."""
        if not self.logs:
            return ["no access audit log is declared (governance.access_audit_logs), so no inference access "
                    "can be shown; declare the server's --audit_log_file"]
        return self.problems + [
            f"{log.path}: {'missing' if log.status == 'missing' else 'empty (0 records)'}, so nothing in it was "
            "verified; point governance.access_audit_logs at the server's --audit_log_file, or state that this "
            "version has had no traffic by design (esteira report lgpd --no-traffic-by-design)"
            for log in self.unread]


def _check(path: Path) -> tuple[LogCheck, int]:
    """The log's verification and how many of its leading lines are proven."""
    if not path.exists():
        return LogCheck(str(path), "missing"), 0
    try:
        state = verify(path)
    except AuditLogError as error:
        return LogCheck(str(path), "tampered", records=error.line - 1, bad_line=error.line,
                        problem=str(error)), error.line - 1
    if state.records == 0:
        return LogCheck(str(path), "empty"), 0
    return LogCheck(str(path), "ok", records=state.records, head=state.head), state.records


def summarize_access(paths: list[Path], model: str, version: str) -> AccessSummary:
    """Calls to ``model`` at ``version`` in the verified part of every log."""
    checks: list[LogCheck] = []
    per_caller: dict[str, dict] = {}
    for path in [part for declared in paths for part in log_set(declared)]:  # one chain per server process
        check, proven = _check(Path(path))
        checks.append(check)
        if not proven:
            continue
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if number > proven:
                    break
                entry = json.loads(line)
                record = entry["record"]
                if record.get("model") != model or str(record.get("version")) != version:
                    continue
                seen = per_caller.setdefault(str(record.get("caller", "anonymous")), {
                    "calls": 0, "first": entry["ts"], "last": entry["ts"], "apis": {}, "statuses": {}})
                seen["calls"] += 1
                seen["first"], seen["last"] = min(seen["first"], entry["ts"]), max(seen["last"], entry["ts"])
                for key, value in (("apis", record.get("api", "?")), ("statuses", record.get("status", "?"))):
                    seen[key][value] = seen[key].get(value, 0) + 1
    callers = [CallerAccess(caller=name, calls=seen["calls"], first=iso_utc(seen["first"]), last=iso_utc(seen["last"]),
                            apis=dict(sorted(seen["apis"].items())), statuses=dict(sorted(seen["statuses"].items())))
               for name, seen in sorted(per_caller.items(), key=lambda item: (-item[1]["calls"], item[0]))]
    firsts = [seen["first"] for seen in per_caller.values()]
    lasts = [seen["last"] for seen in per_caller.values()]
    return AccessSummary(model=model, version=version, logs=checks, calls=sum(c.calls for c in callers),
                         first=iso_utc(min(firsts)) if firsts else None,
                         last=iso_utc(max(lasts)) if lasts else None, callers=callers)


def current_actor() -> str:
    """Who runs this process: ESTEIRA_ACTOR when set (e.g. by CI), else the OS user."""
    import getpass

    return os.environ.get("ESTEIRA_ACTOR") or getpass.getuser()
