"""Loading the pseudonymization key from the environment or a secret file, never from the repo."""
from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from privacy.errors import PseudonymKeyError
from privacy.policy import PseudonymKeyConfig

MIN_KEY_BYTES = 32
DEMO_KEY = b"esteira-demo-pseudonym-key/public/never-use-for-real-data"
_MAKE_KEY = "python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class PseudonymKey:
    """A loaded key and where it came from. `secret` stays out of repr and logs."""

    secret: bytes = field(repr=False)
    source: str
    is_demo: bool = False

    @property
    def key_id(self) -> str:
        """A public name for the key (HMAC of a constant): tells runs apart without revealing the key."""
        return hmac.new(self.secret, b"esteira/key-id", hashlib.sha256).hexdigest()[:16]


def load_key(config: PseudonymKeyConfig, environ: Mapping[str, str] | None = None) -> PseudonymKey:
    """Environment variable first, then the secret file, then the demo key if explicitly allowed."""
    environ = os.environ if environ is None else environ
    if config.env and environ.get(config.env):
        return _checked(environ[config.env].encode("utf-8"), f"env:{config.env}")
    if config.file is not None and config.file.is_file():
        return _checked(config.file.read_bytes().strip(), f"file:{config.file}")
    if config.use_demo_key:
        return PseudonymKey(DEMO_KEY, source="demo", is_demo=True)
    tried = []
    if config.env:
        tried.append(f"environment variable {config.env} is not set")
    if config.file is not None:
        tried.append(f"secret file {config.file} does not exist")
    if not tried:
        tried.append("privacy.key names neither env nor file")
    raise PseudonymKeyError(
        f"no pseudonymization key: {'; '.join(tried)}. Create one with `{_MAKE_KEY}` and put it in "
        f"{'the environment variable ' + config.env if config.env else 'the secret file'}; "
        "for a demo only, set privacy.key.use_demo_key: true (the run is then recorded as using the demo key)"
    )


def _checked(secret: bytes, source: str) -> PseudonymKey:
    if len(secret) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"the key from {source} has {len(secret)} bytes; use at least {MIN_KEY_BYTES} "
            f"(e.g. `{_MAKE_KEY}`)"
        )
    if secret == DEMO_KEY:
        raise PseudonymKeyError(
            f"the key from {source} is the public demo key; generate a real one with `{_MAKE_KEY}`, "
            "or set privacy.key.use_demo_key: true to say this is a demo"
        )
    return PseudonymKey(secret, source=source)
