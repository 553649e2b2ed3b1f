"""One error hierarchy: every exception class the shipped packages define derives from EsteiraError."""
from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from errors import ConfigError, EsteiraError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "components", "models", "serving", "privacy", "tracking", "console", "deploy",
            "observability", "optimization", "orchestration")
BUILT_IN = {name for name, value in vars(builtins).items()
            if isinstance(value, type) and issubclass(value, BaseException)}


def test_every_class_with_a_built_in_exception_base_also_derives_from_the_root() -> None:
    # A class whose bases are all project errors derives from the root through them; one that names a
    # built-in exception must name EsteiraError (or ConfigError) beside it.
    strays = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = {ast.unparse(base) for base in node.bases}
                if bases & BUILT_IN and not bases & {"EsteiraError", "ConfigError"}:
                    strays.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not strays, f"derive these from errors.EsteiraError too: {strays}"


def test_one_config_error_for_the_pipeline_and_the_server() -> None:
    from pipeline.config import ConfigError as PipelineConfigError
    from serving.config import ConfigError as ServingConfigError

    assert PipelineConfigError is ServingConfigError is ConfigError
    with pytest.raises(ValueError, match="the fix"):  # callers that catch ValueError keep working
        raise ConfigError("a problem and the fix")


def test_built_in_bases_are_kept() -> None:
    from privacy.audit import AuditWriteError
    from serving.protocol.errors import ServingError
    from tracking.errors import RegistryError

    assert issubclass(AuditWriteError, OSError) and issubclass(AuditWriteError, EsteiraError)
    assert issubclass(RegistryError, EsteiraError) and issubclass(ServingError, EsteiraError)
