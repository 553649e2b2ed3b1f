"""Optional bearer-token authentication with constant-time comparison.

Tokens come from a file (``--auth_token_file``, e.g. a mounted Kubernetes secret) or from the
``ESTEIRA_AUTH_TOKENS`` environment variable: one token per line (or comma-separated in the
variable), optionally named ``caller:token`` so the access audit can say who called. Unnamed tokens
are audited as ``token-<first 8 hex of sha256>``, never as the token itself.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from serving.config import ConfigError

ENV_VAR = "ESTEIRA_AUTH_TOKENS"


@dataclass(frozen=True)
class Authenticator:
    tokens: tuple[tuple[str, bytes], ...]  # (caller, token)
    protect_probes: bool = False
    protect_metrics: bool = False

    @classmethod
    def load(cls, token_file: str | None, *, protect_probes: bool = False,
             protect_metrics: bool = False) -> Authenticator | None:
        entries: list[str] = []
        if token_file:
            try:
                entries += Path(token_file).read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read --auth_token_file {token_file}: {exc.strerror}") from None
        elif os.environ.get(ENV_VAR):
            entries += os.environ[ENV_VAR].replace(",", "\n").splitlines()
        else:
            return None
        tokens = []
        for raw in entries:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            caller, sep, token = line.rpartition(":")
            if not sep:
                caller, token = "", line
            if len(token) < 16:
                raise ConfigError("every auth token must be at least 16 characters; "
                                  "generate one with `openssl rand -hex 32`")
            caller = caller or "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]
            tokens.append((caller, token.encode()))
        if not tokens:
            raise ConfigError("the auth token source holds no token; add one per line (caller:token)")
        return cls(tuple(tokens), protect_probes, protect_metrics)

    def caller(self, authorization: str | bytes | None) -> str | None:
        """The caller for an ``Authorization: Bearer <token>`` value, or None. Checks every token."""
        if not authorization:
            return None
        if isinstance(authorization, str):
            authorization = authorization.encode("latin-1", "replace")
        scheme, _, presented = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        presented = presented.strip()
        found = None
        for caller, token in self.tokens:
            if hmac.compare_digest(presented, token) and found is None:
                found = caller
        return found
