"""The optimization section: defaults, and clear errors naming the key and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from optimization.settings import OptimizationSettings, Variant
from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_configs_build_every_variant_and_publish_only_built_ones() -> None:
    for name in ("breast_cancer", "fraud"):
        settings = load_config(REPO / "configs" / f"{name}.yaml", base=REPO).optimization
        assert settings is not None and set(settings.variants) == set(Variant)
        assert set(settings.publish) <= set(settings.variants)


@pytest.mark.parametrize(("override", "expected"), [
    ({"optimization.variants": ["float32", "int4"]}, "optimization.variants.1: Input should be 'float32'"),
    ({"optimization.max_auc_drop": -0.1}, "optimization.max_auc_drop: Input should be greater than or equal to 0"),
    ({"optimization.variants": ["float32"]}, "publish names ['dynamic_int8', 'float16'], which are not in variants"),
    ({"optimization.representative_examples": 0}, "optimization.representative_examples: Input should be greater"),
    ({"optimization.variants": []}, "optimization.variants: List should have at least 1 item"),
])
def test_invalid_optimization_config_names_key_and_fix(override: dict, expected: str) -> None:
    config = load_config(REPO / "configs" / "breast_cancer.yaml", base=REPO)
    with pytest.raises(ConfigError) as error:
        config.with_overrides(override)
    assert expected in str(error.value)


def test_unknown_optimization_key_lists_the_allowed_ones(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
    data["optimization"]["max_auc_dorp"] = 0.02
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"optimization.max_auc_dorp: unknown key; allowed here: signature, variants"):
        load_config(path, base=tmp_path)


def test_publish_order_defaults_to_smaller_variants_first() -> None:
    assert OptimizationSettings().publish[0] is Variant.DYNAMIC_INT8
