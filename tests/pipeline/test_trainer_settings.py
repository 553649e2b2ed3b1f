"""One settings contract: what the pipeline sends in custom_config is what the model code reads back."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from models.common.settings import TrainerSettings, settings_schema
from models.fraud.features import FraudSettings
from models.tabular.features import TabularSettings
from pipeline.config import ConfigError, load_config
from pipeline.dag import trainer_custom_config

REPO = Path(__file__).resolve().parents[2]
USE_CASES = [("breast_cancer.yaml", TabularSettings), ("fraud.yaml", FraudSettings)]


def write_config(tmp_path: Path, name: str, mutate) -> Path:
    data = yaml.safe_load((REPO / "configs" / name).read_text())
    mutate(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("name", "schema"), USE_CASES)
def test_each_use_case_reads_back_what_its_config_says(name: str, schema: type[TrainerSettings]) -> None:
    config = load_config(REPO / "configs" / name)
    yaml_config = yaml.safe_load((REPO / "configs" / name).read_text())
    sent = json.loads(json.dumps(trainer_custom_config(config)))  # TFX stores custom_config as JSON
    read = schema.from_custom_config(sent)

    assert settings_schema(config.model.module) is schema
    assert read == config.trainer_settings()
    assert read.to_custom_config() == sent
    assert read.data.label == yaml_config["data"]["label"]
    assert {key: kind.value for key, kind in read.data.features.items()} == yaml_config["data"]["features"]
    model = read.model.model_dump(mode="json")
    for key, value in yaml_config["model"].items():
        if key == "module":
            continue
        if key == "options":  # given options as written, the rest at their schema defaults
            assert {option: model["options"][option] for option in value} == value
        else:
            assert model[key] == value, key
    training = yaml_config["training"]
    assert (read.training.epochs, read.training.seed) == (training.get("epochs", 1), training["seed"])
    assert read.training.distribution == config.training.distribution
    assert read.training.dp == config.training.dp and read.training.input == config.training.input
    assert read.training.backup_root == config.training.backup_root


def test_the_fraud_history_layout_reaches_the_model() -> None:
    config = load_config(REPO / "configs" / "fraud.yaml")
    read = FraudSettings.from_custom_config(json.loads(json.dumps(trainer_custom_config(config))))
    assert read.sequence.length == config.sequence_features.length
    assert read.sequence.prefix == config.sequence_features.prefix
    assert set(read.sequence.value_features) == {f"history_{name}" for name in config.sequence_features.features}


def test_defaults_are_the_same_on_both_sides(tmp_path: Path) -> None:
    """A config that leaves the hyper-parameters out trains with the schema's defaults, on both sides."""
    def strip(data: dict) -> None:
        data["model"] = {"module": data["model"]["module"]}
        data["training"] = {}

    for name, schema in USE_CASES:
        config = load_config(write_config(tmp_path, name, strip))
        read = schema.from_custom_config(json.loads(json.dumps(trainer_custom_config(config))))
        assert read.model.batch_size == config.model.batch_size == 32
        assert read.model.hidden_units == config.model.hidden_units == [32, 16]
        assert read.training.epochs == config.training.epochs == 1
        assert read.training.dp == config.training.dp and not read.training.dp.enabled
        assert read.training.input == config.training.input


def test_model_options_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    path = write_config(tmp_path, "fraud.yaml", lambda d: d["model"]["options"].update(loss="hinge"))
    with pytest.raises(ConfigError, match=r"fraud\.yaml: model\.options\.loss: Input should be 'focal' or "
                                          r"'weighted_bce' \(got 'hinge'\)"):
        load_config(path)
    path = write_config(tmp_path, "fraud.yaml", lambda d: d["model"]["options"].update(lstm_unit=8))
    with pytest.raises(ConfigError, match=r"model\.options\.lstm_unit: unknown key; allowed here: .*lstm_units"):
        load_config(path)
    path = write_config(tmp_path, "fraud.yaml", lambda d: d["data"]["features"].pop("amount"))
    with pytest.raises(ConfigError, match=r"model: .*options\.amount_feature 'amount' must be a numeric column"):
        load_config(path)


def test_dp_and_model_package_errors_name_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, "breast_cancer.yaml", lambda d: d["training"].update(
        dp={"enabled": True, "clipping": "fast", "num_microbatches": 4}))
    with pytest.raises(ConfigError, match=r"training\.dp: .*num_microbatches is only used by clipping='microbatch'"):
        load_config(path)
    path = write_config(tmp_path, "breast_cancer.yaml", lambda d: d["model"].update(module="models.nope"))
    with pytest.raises(ConfigError, match=r"model\.module: package 'models\.nope' not found"):
        load_config(path)
