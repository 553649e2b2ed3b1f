"""The root of Esteira's errors: every exception the project raises derives from :class:`EsteiraError`.

Named ``errors`` for what it holds, as the other top-level rooms are (``pipeline``, ``serving``,
``tracking``), and kept a leaf that imports nothing, so every room may import it without an arrow running
up. Each error keeps the built-in base its callers catch (``ConfigError`` is still a ``ValueError``), so
``except ValueError`` keeps working, and ``except EsteiraError`` catches ours and no library's.
"""
from __future__ import annotations


class EsteiraError(Exception):
    """Base of every error Esteira raises; its message names the problem and the fix."""


class ConfigError(EsteiraError, ValueError):
    """A configuration problem a user can fix (a use-case YAML, a serving config file or flag); the message
    names the key or path and the fix. The one configuration error of the project: the pipeline's and the
    model server's are this class."""
