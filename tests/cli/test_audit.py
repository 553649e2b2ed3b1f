"""``esteira audit verify``: exit 0 with the record count, 1 naming the edited line, 2 for a missing file."""
from __future__ import annotations

from pathlib import Path

import pytest

from cli.audit import audit_main
from privacy.audit import AuditLog


def test_verify_exits_by_what_it_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        for i in range(2):
            log.append({"caller": f"user-{i}", "model": "fraud", "status": "OK"})
    assert audit_main(["verify", str(path)]) == 0
    assert "ok: 2 records" in capsys.readouterr().out
    path.write_text(path.read_text().replace("fraud", "other", 1))
    assert audit_main(["verify", str(path)]) == 1
    assert "line 1" in capsys.readouterr().err
    assert audit_main(["verify", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
