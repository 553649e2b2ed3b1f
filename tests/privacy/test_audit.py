"""The audit chain detects edits, deletions, reordering and truncation, and names the line."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from privacy.audit import AuditLog, AuditLogError, read_records, verify


def _write(path: Path, count: int) -> str:
    with AuditLog(path) as log:
        for i in range(count):
            log.append({"caller": f"user-{i}", "model": "fraud", "status": "OK", "latency_ms": i * 1.5})
        return log.head


def test_round_trip_and_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    head = _write(path, 5)
    state = verify(path, expected_head=head)
    assert state.records == 5 and state.head == head
    assert [r["caller"] for r in read_records(path)] == [f"user-{i}" for i in range(5)]


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 2)
    with AuditLog(path) as log:
        log.append({"caller": "later"})
    assert verify(path).records == 3


def test_edited_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 4)
    lines = path.read_text().splitlines(keepends=True)
    entry = json.loads(lines[2])
    entry["record"]["status"] = "NOT_FOUND"
    lines[2] = json.dumps(entry) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(AuditLogError, match=r"line 3: .*edited") as info:
        verify(path)
    assert info.value.line == 3


def test_deleted_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 4)
    lines = path.read_text().splitlines(keepends=True)
    del lines[1]
    path.write_text("".join(lines))
    with pytest.raises(AuditLogError) as info:
        verify(path)
    assert info.value.line == 2


def test_reordered_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 4)
    lines = path.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    with pytest.raises(AuditLogError) as info:
        verify(path)
    assert info.value.line == 2


def test_truncated_tail_needs_the_known_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    head = _write(path, 3)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))
    assert verify(path).records == 2  # a shorter chain is still a chain ...
    with pytest.raises(AuditLogError, match="cut from the end"):
        verify(path, expected_head=head)  # ... but not the one that was written


def test_garbage_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 2)
    with open(path, "a") as handle:
        handle.write('{"seq": 3')
    state = verify(path)  # a write cut short is reported as torn, not as an edit
    assert (state.records, state.torn_bytes) == (2, len('{"seq": 3'))
    path.write_text("not json\n")
    with pytest.raises(AuditLogError, match="line 1: not a valid audit entry"):
        verify(path)


def test_refuses_to_extend_a_broken_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write(path, 2)
    path.write_text(path.read_text().replace("user-0", "user-X"))
    with pytest.raises(AuditLogError):
        AuditLog(path)


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    threads = [threading.Thread(target=lambda: [log.append({"n": i}) for i in range(50)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert verify(path).records == 200
