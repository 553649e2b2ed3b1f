"""Hash-chained, append-only audit log: one JSON record per line, each sealed to the one before.

Every line is ``{"seq": n, "ts": <unix seconds>, "record": {...}, "prev": <hash>, "hash": <hash>}``
where ``hash = sha256(prev + canonical JSON of {seq, ts, record})`` and the first line's ``prev`` is
64 zeros. Editing a line breaks its own hash, reordering or deleting a line breaks the next line's
``prev`` (and the ``seq`` count), so :func:`verify` names the first line that does not fit.
Truncating the tail is only detectable against a known head; :func:`verify` returns it so callers
can keep it elsewhere (e.g. in a metric or the compliance report).

A last line without its newline is a write cut short (the process killed mid-write, the disk full), not an
edit: :func:`verify` reports it as ``torn_bytes`` beside the records before it, which still verify, and
:class:`AuditLog` sets the fragment aside (``<log>.torn-<seq>``) and seals a record saying so before it
continues the chain. A failed append (``ENOSPC``) is cut back off the file, so the chain on disk never
holds half a record and the next append continues it.

Pure Python on purpose: the serving access audit and the pipeline both use it, and it must be
checkable anywhere without TensorFlow.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import EsteiraError

GENESIS = "0" * 64


class AuditLogError(EsteiraError):
    """The log cannot be trusted from ``line`` on (1-based); the message says why and what to do."""

    def __init__(self, path: str | os.PathLike[str], line: int, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(
            f"{path}: line {line}: {problem}. The log was changed after it was written; "
            "restore it from a trusted copy and keep the damaged file for investigation."
        )


class AuditWriteError(EsteiraError, OSError):
    """Records could not be appended (e.g. the disk is full); nothing of them stays in the file."""


@dataclass(frozen=True)
class VerifiedLog:
    """What a successful verification proved: how many records, the hash of the last one, and the length
    of a torn last line after them (0 when the file ends with a whole line)."""

    records: int
    head: str
    torn_bytes: int = 0
    end_offset: int = 0  # where the verified lines end (a torn fragment starts here)


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
        torn: VerifiedLog | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            state = verify(self.path)
            self._seq, self._head = state.records, state.head
            torn = state if state.torn_bytes else None
        else:
            self._seq, self._head = 0, GENESIS
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if torn is not None:
            self._set_torn_tail_aside(torn)

    def _set_torn_tail_aside(self, state: VerifiedLog) -> None:
        """Move a torn last line to ``<log>.torn-<seq>`` and seal a record of it, so the chain goes on
        from the last whole record and the fragment stays for whoever investigates."""
        with open(self.path, "rb") as handle:
            handle.seek(state.end_offset)
            fragment = handle.read()
        aside = self.path.with_name(f"{self.path.name}.torn-{self._seq + 1}")
        aside.write_bytes(fragment)
        os.ftruncate(self._fd, state.end_offset)
        self.append({"audit_event": "torn_tail_set_aside", "bytes": len(fragment),
                     "sha256": hashlib.sha256(fragment).hexdigest(), "kept_in": aside.name})

    @property
    def head(self) -> str:
        return self._head

    def append(self, record: Mapping[str, Any]) -> str:
        """Seal and append one record (must be JSON-serializable); returns its hash."""
        self.append_many([record])
        return self._head

    def append_many(self, records: list[Mapping[str, Any]]) -> None:
        """Seal and append ``records`` in one write; on failure none of them stays in the file or the chain."""
        with self._lock:
            lines, seq, head = [], self._seq, self._head
            for record in records:
                seq, ts = seq + 1, round(time.time(), 6)
                record = dict(record)
                digest = _digest(head, seq, ts, record)
                entry = {"seq": seq, "ts": ts, "record": record, "prev": head, "hash": digest}
                lines.append(json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
                head = digest
            self._write("".join(line + "\n" for line in lines).encode("utf-8"))
            self._seq, self._head = seq, head

    def _write(self, data: bytes) -> None:
        """One append that lands whole or not at all: a short write (full disk) is cut back off the file."""
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.fsync:
                os.fsync(self._fd)
        except OSError as error:
            with contextlib.suppress(OSError):  # if even this fails, the next open sets the torn line aside
                os.ftruncate(self._fd, start)
            raise AuditWriteError(error.errno, f"could not append to the audit log {self.path}: "
                                               f"{error.strerror}; free space on its disk or move "
                                               f"--audit_log_file to one that has it") from error

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def writer_path(path: str | os.PathLike[str], writer: int) -> str:
    """The chain writer ``writer`` of a log shared by several server processes appends to (one writer per
    chain; :func:`log_set` reads them all back)."""
    return f"{os.fspath(path)}.w{writer}"


def log_set(path: str | os.PathLike[str]) -> list[Path]:
    """The files one declared log is made of: ``path`` itself when it exists, and the per-writer chains
    ``<path>.w0``, ``<path>.w1``, ... that several server processes write (one writer per chain); just
    ``[path]`` when there is neither, so a missing log is still reported missing."""
    base = Path(path)
    writers = sorted((p for p in base.parent.glob(base.name + ".w*") if p.name[len(base.name) + 2:].isdigit()),
                     key=lambda p: int(p.name[len(base.name) + 2:]))
    return ([base] if base.exists() or not writers else []) + writers


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The records of a log, after verifying the whole chain (a torn last line is not a record)."""
    state = verify(path)
    with open(path, encoding="utf-8") as handle:
        for _number, line in zip(range(state.records), handle, strict=False):
            yield json.loads(line)["record"]


def verify(path: str | os.PathLike[str], *, expected_head: str | None = None) -> VerifiedLog:
    """Check every line's hash and link; raise :class:`AuditLogError` naming the first bad line.

    Pass ``expected_head`` (a hash kept elsewhere) to also detect lines cut from the end. A last line
    without a newline is a torn write, reported in ``torn_bytes``, not an error.
    """
    prev, count, offset, torn = GENESIS, 0, 0, 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                torn = len(raw)  # only the last line can lack its newline
                break
            offset += len(raw)
            try:
                line = raw.decode("utf-8")
                entry = json.loads(line)
                seq, ts, record, line_prev, digest = (
                    entry["seq"], entry["ts"], entry["record"], entry["prev"], entry["hash"]
                )
            except (ValueError, KeyError, TypeError):  # UnicodeDecodeError is a ValueError
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
    return VerifiedLog(records=count, head=prev, torn_bytes=torn, end_offset=offset)
