"""Config loading: every mistake stops with one line naming the key or path and what is allowed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, check_data_columns, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "breast_cancer.yaml"


def write_config(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(CONFIG.read_text())
    mutate(data)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_config_loads_with_paths_resolved(tmp_path: Path) -> None:
    config = load_config(CONFIG, base=tmp_path)
    assert config.data.label == "malignant"
    assert len(config.data.features) == 30
    assert config.pipeline.root == tmp_path / "outputs/breast_cancer/pipeline"
    assert config.serving.base_path.is_absolute()


def test_unknown_key_names_key_and_allowed_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda d: d["training"].update(trian_steps=5))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "training.trian_steps" in message
    assert "train_steps" in message and "eval_steps" in message


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda d: d["model"].update(batch_size="many"))
    with pytest.raises(ConfigError, match=r"model\.batch_size: .*'many'"):
        load_config(path)


def test_input_pipeline_settings_are_validated_and_reach_the_trainer(tmp_path: Path) -> None:
    from pipeline.dag import trainer_custom_config
    path = write_config(tmp_path, lambda d: d.setdefault("training", {}).update(
        input={"cache": "off", "parallel_reads": 4, "prefetch": "autotune"}))
    sent = trainer_custom_config(load_config(path))["training"]["input"]
    assert sent == {"cache": "off", "shuffle_buffer": 10_000, "parallel_reads": 4, "parallel_calls": "autotune",
                    "prefetch": "autotune", "deterministic": True}
    path = write_config(tmp_path, lambda d: d.setdefault("training", {}).update(input={"parallel_calls": 0}))
    with pytest.raises(ConfigError, match=r"training\.input\.parallel_calls.*>= 1 or 'autotune', got 0"):
        load_config(path)
    path = write_config(tmp_path, lambda d: d.setdefault("training", {}).update(input={"cache": "disk"}))
    with pytest.raises(ConfigError, match=r"training\.input\.cache: .*'memory' or 'off'"):
        load_config(path)


def test_unknown_feature_type_lists_allowed(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda d: d["data"]["features"].update(mean_radius="double"))
    with pytest.raises(ConfigError, match=r"data\.features\.mean_radius: .*'float', 'int' or 'string'"):
        load_config(path)


def test_missing_section_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda d: d.pop("serving"))
    with pytest.raises(ConfigError, match=r"serving: required key is missing"):
        load_config(path)


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("pipeline:\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(path)


def test_pipeline_name_must_suit_kubeflow(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda d: d["pipeline"].update(name="Breast_Cancer"))
    with pytest.raises(ConfigError, match=r"pipeline\.name"):
        load_config(path)


def test_label_absent_from_data_is_named(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "rows.csv").write_text("mean_radius,diagnosis\n1.0,0\n")
    path = write_config(tmp_path, lambda d: d["data"].update(source=str(data_dir)))
    config = load_config(path)
    with pytest.raises(ConfigError, match=r"data\.label: column 'malignant' not in rows.csv"):
        check_data_columns(config)
    (data_dir / "rows.csv").write_text("mean_radius,malignant\n1.0,0\n")
    with pytest.raises(ConfigError, match=r"data\.features: column\(s\) .*mean_texture.* not in rows.csv"):
        check_data_columns(config)


def test_missing_data_folder_says_how_to_create_it(tmp_path: Path) -> None:
    config = load_config(CONFIG, base=tmp_path)
    with pytest.raises(ConfigError, match="esteira data breast-cancer"):
        check_data_columns(config)


def test_overrides_are_validated() -> None:
    config = load_config(CONFIG)
    assert config.with_overrides({"training.train_steps": 7}).training.train_steps == 7
    with pytest.raises(ConfigError, match="unknown key 'stepz'"):
        config.with_overrides({"training.stepz": 7})
    with pytest.raises(ConfigError, match=r"training\.train_steps"):
        config.with_overrides({"training.train_steps": 0})


def test_cli_config_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda d: d["evaluation"].update(auc_lower_bound=1.5))
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--config", str(path)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "evaluation.auc_lower_bound" in lines[0]
    assert "Traceback" not in result.stderr

    debug = subprocess.run([sys.executable, "-m", "pipeline.cli", "--debug", "run", "--config", str(path)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


FRAUD_CONFIG = REPO / "configs" / "fraud.yaml"


def write_fraud_config(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(FRAUD_CONFIG.read_text())
    mutate(data)
    path = tmp_path / "fraud.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_fraud_config_loads_with_policy_and_history() -> None:
    config = load_config(FRAUD_CONFIG)
    assert config.privacy is not None and config.sequence_features is not None
    history = config.sequence_feature_types()
    assert history["history_merchant_category"] == "string" and history["history_mask"] == "int"


def test_feature_the_policy_drops_is_refused(tmp_path: Path) -> None:
    path = write_fraud_config(tmp_path, lambda d: d["data"]["features"].update(cpf="string"))
    with pytest.raises(ConfigError, match=r"data column 'cpf' is not produced by the privacy policy"):
        load_config(path)


def test_history_without_privacy_is_refused(tmp_path: Path) -> None:
    path = write_fraud_config(tmp_path, lambda d: d.pop("privacy"))
    with pytest.raises(ConfigError, match="sequence_features needs a privacy section"):
        load_config(path)


def test_raw_column_missing_from_policy_stops_before_the_run(tmp_path: Path) -> None:
    span = tmp_path / "data" / "fraud" / "span-0001"
    span.mkdir(parents=True)
    config = load_config(FRAUD_CONFIG, base=tmp_path)
    header = list(config.privacy.columns) + ["mothers_maiden_name"]
    (span / "transactions.csv").write_text(",".join(header) + "\n")
    with pytest.raises(ConfigError, match="mothers_maiden_name"):
        check_data_columns(config)


def test_governance_is_required_with_a_privacy_policy(tmp_path: Path) -> None:
    path = write_fraud_config(tmp_path, lambda d: d.pop("governance"))
    with pytest.raises(ConfigError, match=r"governance: required key is missing .*legal_basis"):
        load_config(path)


def test_missing_governance_field_names_the_key(tmp_path: Path) -> None:
    path = write_fraud_config(tmp_path, lambda d: d["governance"].pop("retention"))
    with pytest.raises(ConfigError, match=r"governance\.retention: required key is missing"):
        load_config(path)


def test_governance_audit_log_paths_resolve(tmp_path: Path) -> None:
    config = load_config(FRAUD_CONFIG, base=tmp_path)
    assert config.governance is not None and config.governance.legal_basis
    assert config.governance.access_audit_logs == [tmp_path / "outputs/fraud/serving-audit.log"]


@pytest.mark.parametrize(("config", "command"), [
    ("breast_cancer.yaml", "`esteira data breast-cancer --out {source}`"),
    ("fraud.yaml", "`esteira data fraud --transactions 120000 --days 4 --seed 7 --out {source}`")])
def test_missing_data_folder_names_the_one_command_that_creates_it(tmp_path: Path, config: str, command: str) -> None:
    loaded = load_config(REPO / "configs" / config, base=tmp_path)
    with pytest.raises(ConfigError) as error:
        check_data_columns(loaded)
    source = loaded.data.source
    assert str(error.value) == (f"data.source: folder {source} not found; create it with "
                                f"{command.format(source=source)} or fix the path")


def test_curated_schema_lives_beside_the_config(tmp_path: Path) -> None:
    config = load_config(CONFIG, base=tmp_path)
    assert config.validation.schema_file == REPO / "configs" / "schemas" / "breast_cancer" / "schema.pbtxt"
    assert config.validation.on_anomaly == "warn" and config.model_validation.sample_size == 20
    assert load_config(REPO / "configs" / "fraud.yaml", base=tmp_path).validation.on_anomaly == "fail"


def test_bad_create_command_placeholder_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda d: d["data"].update(create_command="make {folder}"))
    with pytest.raises(ConfigError, match=r"data.create_command: .*only the placeholder '\{source\}'"):
        load_config(path)
