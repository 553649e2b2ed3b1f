"""``esteira audit verify FILE``: check a hash-chained audit log (privacy.audit)."""
from __future__ import annotations

import sys

from privacy.audit import AuditLogError, log_set, verify


def audit_main(argv: list[str]) -> int:
    """``esteira audit verify FILE``: exit 0 when the chain holds, 1 naming the bad line. FILE may be the
    --audit_log_file of a server with several processes: each worker's chain ``FILE.w<i>`` is checked."""

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "verify":
        print("usage: esteira audit verify FILE", file=sys.stderr)
        return 2
    code = 0
    for path in log_set(args[1]):
        name = "" if str(path) == args[1] else f"{path}: "
        try:
            state = verify(path)
        except FileNotFoundError:
            print(f"error: {path} does not exist; pass the path of an audit log", file=sys.stderr)
            return 2
        except AuditLogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 1
            continue
        print(f"{name}ok: {state.records} records, head {state.head}")
        if state.torn_bytes:
            print(f"warning: {name}after them, a torn last line of {state.torn_bytes} bytes (a write cut short by "
                  "a crash or a full disk, not an edit); the server sets it aside when it next opens the log",
                  file=sys.stderr)
    return code
