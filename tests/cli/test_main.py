"""The `esteira` command tree: every command resolves, no room imports it, `esteira serve` starts light."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import COMMANDS, _load, main

REPO = Path(__file__).resolve().parents[2]
ROOMS = ("pipeline", "components", "models", "serving", "privacy", "tracking", "console", "deploy",
         "observability", "optimization", "orchestration", "errors")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_names_a_function(name: str) -> None:
    assert callable(_load(COMMANDS[name][0]))


def test_no_room_imports_the_command_package() -> None:
    importers = []
    for room in ROOMS:
        for path in (REPO / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                         else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
                if any(name == "cli" or name.startswith("cli.") for name in names):
                    importers.append(str(path.relative_to(REPO)))
    assert not importers, f"the rooms are libraries; move what they need out of cli/: {importers}"


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bogus"])
    assert exit_.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


def test_serve_loads_neither_the_pipeline_stack_nor_tensorflow_to_parse_its_flags() -> None:
    probe = ("import json, sys\nfrom cli.main import main\ncode = main(['serve', '--help'])\n"
             "heavy = ('tfx', 'apache_beam', 'tensorflow', 'pipeline.config')\n"
             "print(json.dumps([m for m in heavy if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
