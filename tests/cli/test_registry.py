"""esteira promote / rollback: the champion alias moves, the label file follows, the audit log says who."""
from __future__ import annotations

from pathlib import Path

import pytest

from cli.registry import promote_main, rollback_main
from privacy.audit import read_records
from serving.config import read_model_config
from tests.tracking.conftest import make_record, pushed_version
from tracking.registry import CHALLENGER, CHAMPION, aliases_of
from tracking.run_logger import log_pipeline_run
from tracking.run_record import Registration


@pytest.fixture
def registry(client, experiment, model_name, tmp_path: Path) -> dict:
    """Two registered versions (serving versions 100 and 200) and a models.config serving both."""
    for serving in ("100", "200"):
        registration = Registration(model_name, serving, pushed_version(tmp_path / "pushed", serving))
        log_pipeline_run(client, experiment, make_record(f"{model_name}-{serving}", registration))
    config_file = tmp_path / "models.config"
    config_file.write_text(f'model_config_list {{ config {{ name: "{model_name}" base_path: "{tmp_path}/pushed" '
                           'model_platform: "tensorflow" model_version_policy { all {} } } }\n')
    return {"config_file": config_file, "audit": tmp_path / "audit.jsonl"}


def labels(config_file: Path) -> dict[str, int]:
    return dict(read_model_config(config_file).model_config_list.config[0].version_labels)


def run(main, target, model_name: str, registry: dict, *extra: str) -> int:
    return main(["--model", model_name, "--tracking_uri", target.uri, "--model_config_file",
                 str(registry["config_file"]), "--audit_log", str(registry["audit"]), *extra])


def test_promote_then_rollback_moves_champion_and_labels(client, target, model_name, registry, monkeypatch) -> None:
    monkeypatch.setenv("ESTEIRA_ACTOR", "ana.reviewer")
    assert run(promote_main, target, model_name, registry, "--version", "1") == 0
    assert aliases_of(client.get_registered_model(model_name)) == {CHAMPION: "1", CHALLENGER: "2"}
    assert labels(registry["config_file"]) == {"stable": 100, "canary": 200}

    assert run(promote_main, target, model_name, registry, "--version", "2") == 0
    assert labels(registry["config_file"]) == {"stable": 200, "canary": 200}

    assert run(rollback_main, target, model_name, registry) == 0
    assert aliases_of(client.get_registered_model(model_name))[CHAMPION] == "1"
    assert labels(registry["config_file"]) == {"stable": 100, "canary": 200}

    records = list(read_records(registry["audit"]))  # verifies the hash chain too
    assert [r["event"] for r in records] == ["registry.promote", "registry.promote", "registry.rollback"]
    assert {r["actor"] for r in records} == {"ana.reviewer"}
    assert [(r["champion_before"], r["champion_after"]) for r in records] == [(None, "1"), ("1", "2"), ("2", "1")]


def _unchanged(client, model_name: str, registry: dict) -> None:
    assert CHAMPION not in aliases_of(client.get_registered_model(model_name))
    assert labels(registry["config_file"]) == {}
    assert not registry["audit"].exists()


def test_unknown_model_changes_nothing(client, target, model_name, registry, capsys) -> None:
    assert promote_main(["--model", "no_such_model", "--version", "1", "--tracking_uri", target.uri,
                         "--model_config_file", str(registry["config_file"]),
                         "--audit_log", str(registry["audit"])]) == 1
    error = capsys.readouterr().err
    assert "no registered model 'no_such_model'" in error and model_name in error
    _unchanged(client, model_name, registry)


def test_unknown_version_changes_nothing(client, target, model_name, registry, capsys) -> None:
    assert run(promote_main, target, model_name, registry, "--version", "9") == 1
    assert "has no version '9' (versions: 1, 2)" in capsys.readouterr().err
    _unchanged(client, model_name, registry)


def test_rollback_without_a_previous_champion_changes_nothing(client, target, model_name, registry, capsys) -> None:
    assert run(rollback_main, target, model_name, registry) == 1
    assert "no previous champion" in capsys.readouterr().err
    _unchanged(client, model_name, registry)


def test_model_missing_from_the_label_file_changes_nothing(client, target, model_name, registry, capsys) -> None:
    registry["config_file"].write_text('model_config_list { config { name: "other" base_path: "/m" } }\n')
    assert run(promote_main, target, model_name, registry, "--version", "1") == 1
    assert f"model {model_name!r} is not in" in capsys.readouterr().err
    assert CHAMPION not in aliases_of(client.get_registered_model(model_name))
    assert not registry["audit"].exists()
