"""Key loading: environment, secret file, demo key only when asked for."""
from __future__ import annotations

from pathlib import Path

import pytest

from privacy.errors import PseudonymKeyError
from privacy.keys import DEMO_KEY, load_key
from privacy.policy import PseudonymKeyConfig

SECRET = "0123456789abcdef" * 4


def test_environment_variable_wins() -> None:
    key = load_key(PseudonymKeyConfig(env="MY_KEY"), environ={"MY_KEY": SECRET})
    assert key.secret == SECRET.encode() and key.source == "env:MY_KEY" and not key.is_demo


def test_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(SECRET + "\n")
    key = load_key(PseudonymKeyConfig(env="MY_KEY", file=path), environ={})
    assert key.secret == SECRET.encode() and key.source == f"file:{path}"


def test_missing_key_names_the_sources_and_the_fix(tmp_path: Path) -> None:
    config = PseudonymKeyConfig(env="MY_KEY", file=tmp_path / "absent")
    with pytest.raises(PseudonymKeyError) as caught:
        load_key(config, environ={})
    message = str(caught.value)
    assert "MY_KEY is not set" in message and "absent does not exist" in message
    assert "secrets.token_hex" in message and "use_demo_key" in message


def test_demo_key_only_when_asked_for_and_recorded_as_such() -> None:
    with pytest.raises(PseudonymKeyError):
        load_key(PseudonymKeyConfig(env="MY_KEY"), environ={})
    key = load_key(PseudonymKeyConfig(env="MY_KEY", use_demo_key=True), environ={})
    assert key.is_demo and key.source == "demo" and key.secret == DEMO_KEY


def test_real_key_is_preferred_over_the_demo_key() -> None:
    key = load_key(PseudonymKeyConfig(env="MY_KEY", use_demo_key=True), environ={"MY_KEY": SECRET})
    assert not key.is_demo


def test_short_key_is_refused() -> None:
    with pytest.raises(PseudonymKeyError, match="has 5 bytes; use at least 32"):
        load_key(PseudonymKeyConfig(env="MY_KEY"), environ={"MY_KEY": "short"})


def test_the_demo_key_cannot_pose_as_a_real_one() -> None:
    with pytest.raises(PseudonymKeyError, match="public demo key"):
        load_key(PseudonymKeyConfig(env="MY_KEY"), environ={"MY_KEY": DEMO_KEY.decode()})


def test_key_id_names_the_key_without_revealing_it() -> None:
    a = load_key(PseudonymKeyConfig(env="K"), environ={"K": SECRET})
    b = load_key(PseudonymKeyConfig(env="K"), environ={"K": SECRET[::-1]})
    assert a.key_id != b.key_id and len(a.key_id) == 16 and a.key_id not in SECRET
    assert SECRET not in repr(a)
