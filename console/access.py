"""Who is calling (reviewer or approver, from the server's token files) and the audit trail of what they did.

Tokens are read by the model server's Authenticator, so a console token file has the server's
format (``caller:token`` per line). A browser presents its token once on the login page and then
in an HttpOnly, SameSite=Strict cookie; scripts may send ``Authorization: Bearer <token>``.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import EsteiraError
from privacy.audit import AuditLog
from serving.api.auth import Authenticator

REVIEWER, APPROVER = "reviewer", "approver"
COOKIE = "esteira_console_token"


class AccessConfigError(EsteiraError, ValueError):
    """The token files are missing or unreadable; the message names the flag to fix."""


@dataclass(frozen=True)
class Caller:
    name: str
    role: str

    @property
    def may_approve(self) -> bool:
        return self.role == APPROVER


class Roles:
    """Approver tokens first: a token listed in both files acts as an approver."""

    def __init__(self, reviewer_tokens: str | None, approver_tokens: str | None) -> None:
        if not reviewer_tokens and not approver_tokens:
            raise AccessConfigError("the console needs token files: pass --reviewer_tokens FILE and "
                                    "--approver_tokens FILE (one caller:token per line, tokens of 16+ characters)")
        try:
            self._by_role = [(role, Authenticator.load(path)) for role, path in
                             ((APPROVER, approver_tokens), (REVIEWER, reviewer_tokens)) if path]
        except ValueError as error:  # serving's ConfigError names the file and the problem
            raise AccessConfigError(str(error)) from None

    def caller(self, token: str | None) -> Caller | None:
        if not token:
            return None
        for role, authenticator in self._by_role:
            name = authenticator.caller(f"Bearer {token}") if authenticator else None
            if name:
                return Caller(name, role)
        return None


def presented_token(headers: Mapping[str, str], cookies: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return cookies.get(COOKIE)


class AuditTrail:
    """Appends console events to the hash-chained audit log; one lock, so registry moves and views interleave safely."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()

    def record(self, caller: Caller, event: str, **details: Any) -> None:
        with self.lock, AuditLog(self.path) as log:
            log.append({"event": event, "actor": caller.name, "role": caller.role, **details})
