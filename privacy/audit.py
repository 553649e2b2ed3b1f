"""Hash-chained, append-only audit log: one JSON record per line, each sealed to the one before.

Every line is ``{"seq": n, "ts": <unix seconds>, "record": {...}, "prev": <hash>, "hash": <hash>}``
where ``hash = sha256(prev + canonical JSON of {seq, ts, record})`` and the first line's ``prev`` is
64 zeros. Editing a line breaks its own hash, reordering or deleting a line breaks the next line's
``prev`` (and the ``seq`` count), so :func:`verify` names the first line that does not fit.
Truncating the tail is only detectable against a known head; :func:`verify` returns it so callers
can keep it elsewhere (e.g. in a metric or the compliance report).

Pure Python on purpose: the serving access audit and the pipeline both use it, and it must be
checkable anywhere without TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


class AuditLogError(Exception):
    """The log cannot be trusted from ``line`` on (1-based); the message says why and what to do."""

    def __init__(self, path: str | os.PathLike[str], line: int, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(
            f"{path}: line {line}: {problem}. The log was changed after it was written; "
            "restore it from a trusted copy and keep the damaged file for investigation."
        )


@dataclass(frozen=True)
class VerifiedLog:
    """What a successful verification proved: how many records, and the hash of the last one."""

    records: int
    head: str


def _digest(prev: str, seq: int, ts: float, record: Mapping[str, Any]) -> str:
    body = json.dumps({"seq": seq, "ts": ts, "record": record}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256((prev + body).encode("utf-8")).hexdigest()


class AuditLog:
    """Appends records to one file; safe to share between threads of one process.

    Opening an existing log verifies it first, so new records never extend a chain that was
    already broken.
    """

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            state = verify(self.path)
            self._seq, self._head = state.records, state.head
        else:
            self._seq, self._head = 0, GENESIS
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - open for the log's life; close() ends it

    @property
    def head(self) -> str:
        return self._head

    def append(self, record: Mapping[str, Any]) -> str:
        """Seal and append one record (must be JSON-serializable); returns its hash."""
        self.append_many([record])
        return self._head

    def append_many(self, records: list[Mapping[str, Any]]) -> None:
        with self._lock:
            lines = []
            for record in records:
                seq, ts = self._seq + 1, round(time.time(), 6)
                record = dict(record)
                digest = _digest(self._head, seq, ts, record)
                entry = {"seq": seq, "ts": ts, "record": record, "prev": self._head, "hash": digest}
                lines.append(json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
                self._seq, self._head = seq, digest
            self._file.write("".join(line + "\n" for line in lines))
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a log, after verifying the whole chain."""
    verify(path)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)["record"]


def verify(path: str | os.PathLike[str], *, expected_head: str | None = None) -> VerifiedLog:
    """Check every line's hash and link; raise :class:`AuditLogError` naming the first bad line.

    Pass ``expected_head`` (a hash kept elsewhere) to also detect lines cut from the end.
    """
    prev, count = GENESIS, 0
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith("\n"):
                raise AuditLogError(path, number, "the line is incomplete (no newline), a write was cut short")
            try:
                entry = json.loads(line)
                seq, ts, record, line_prev, digest = (
                    entry["seq"], entry["ts"], entry["record"], entry["prev"], entry["hash"]
                )
            except (ValueError, KeyError, TypeError):
                raise AuditLogError(path, number,
                                    "not a valid audit entry (needs seq, ts, record, prev, hash)") from None
            if line_prev != prev:
                raise AuditLogError(path, number, "its 'prev' does not match the previous line's hash "
                                                  "(a line was deleted, inserted or reordered)")
            if seq != number:
                raise AuditLogError(path, number, f"sequence number {seq} where {number} was expected "
                                                  "(a line was deleted or reordered)")
            if _digest(prev, seq, ts, record) != digest:
                raise AuditLogError(path, number, "its content does not match its hash (the line was edited)")
            prev, count = digest, number
    if expected_head is not None and prev != expected_head:
        raise AuditLogError(path, count + 1,
                            "the log ends before the expected last record (lines were cut from the end)")
    return VerifiedLog(records=count, head=prev)


def main(argv: list[str] | None = None) -> int:
    """``python -m privacy.audit verify FILE``: exit 0 when the chain holds, 1 naming the bad line."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "verify":
        print("usage: python -m privacy.audit verify FILE", file=sys.stderr)
        return 2
    try:
        state = verify(args[1])
    except FileNotFoundError:
        print(f"error: {args[1]} does not exist; pass the path of an audit log", file=sys.stderr)
        return 2
    except AuditLogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {state.records} records, head {state.head}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
