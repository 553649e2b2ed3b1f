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
    with pytest.raises(ConfigError, match=r"nope\.yaml not found"):
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
    result = subprocess.run([sys.executable, "-m", "cli", "run", "--config", str(path)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "evaluation.auc_lower_bound" in lines[0]
    assert "Traceback" not in result.stderr

    debug = subprocess.run([sys.executable, "-m", "cli", "--debug", "run", "--config", str(path)],
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
    header = [*config.privacy.columns, "mothers_maiden_name"]
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
    ("fraud.yaml", "`esteira data fraud --transactions 150000 --days 5 --seed 7 --out {source}`")])
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


HANDBOOK_CONFIG = REPO / "configs" / "fraud_handbook.yaml"


def write_handbook_config(tmp_path: Path, mutate=lambda d: None, spans: range | None = None) -> Path:
    """The handbook config, changed by `mutate`, with empty span folders under tmp_path/data/fraud_handbook."""
    data = yaml.safe_load(HANDBOOK_CONFIG.read_text())
    mutate(data)
    for span in spans or []:
        folder = tmp_path / "data" / "fraud_handbook" / f"span-{span:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "transactions.csv").write_text("")
    path = tmp_path / "handbook.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_handbook_config_splits_by_time_with_window_features(tmp_path: Path) -> None:
    config = load_config(write_handbook_config(tmp_path, spans=range(1, 46)), base=tmp_path)
    split = config.data.time_split
    assert (split.train_days, split.delay_days, split.eval_days, split.end_span) == (7, 7, 7, None)
    assert config.window_features.label_delay_days == 7
    assert config.time_split_settings() == {"train_days": 7, "delay_days": 7, "eval_days": 7, "time": "timestamp",
                                            "card_key": "card_id", "label": "is_fraud"}
    assert load_config(CONFIG).data.time_split is None and load_config(CONFIG).data.split == {"train": 4, "eval": 1}


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.pop("train_days"), r"data\.split\.train_days: required key is missing"),
    (lambda s: s.update(trian_days=3), r"data\.split\.trian_days: unknown key; allowed here: kind, train_days"),
    (lambda s: s.update(kind="random"), r"data\.split\.kind: Input should be 'time' \(got 'random'\)"),
    (lambda s: s.update(delay_days=-1), r"data\.split\.delay_days: .*greater than or equal to 0 \(got -1\)"),
    (lambda s: s.update(eval_days=0), r"data\.split\.eval_days: .*greater than or equal to 1"),
])
def test_bad_time_split_keys_are_named(tmp_path: Path, mutate, message: str) -> None:
    path = write_handbook_config(tmp_path, lambda d: mutate(d["data"]["split"]))
    with pytest.raises(ConfigError, match=message):
        load_config(path, base=tmp_path)


def test_hash_split_errors_still_name_the_split(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda d: d["data"].update(split={"train": "many", "eval": 1}))
    with pytest.raises(ConfigError, match=r"data\.split\.train: .*valid integer"):
        load_config(path)


@pytest.mark.parametrize(("spans", "split", "message"), [
    (range(1, 21), {}, r"data\.split: train_days \+ delay_days \+ eval_days = 21 days end on span 20 and start at "
                       r"span 0, before the data's first span 1; .* set end_span to 21 or later"),
    (range(1, 46), {"end_span": 99}, r"data\.split\.end_span: span 99 is not under .* \(spans 1\.\.45\)"),
    (range(1, 26), {}, r"window_features\.label_delay_days: terminal windows end 7 days before each transaction, "
                       r"but the data holds only 4 day\(s\) before the train window \(span 5\); set "
                       r"data\.split\.end_span to 28 or later"),
    ([*range(1, 30), *range(31, 46)], {}, r"data\.split: spans \[30\] of the train and eval windows are missing"),
])
def test_windows_outside_the_data_are_refused_when_loading(tmp_path: Path, spans, split: dict, message: str) -> None:
    path = write_handbook_config(tmp_path, lambda d: d["data"]["split"].update(split), spans=spans)
    with pytest.raises(ConfigError, match=message):
        load_config(path, base=tmp_path)


def test_label_delay_shorter_than_the_split_delay_is_refused(tmp_path: Path) -> None:
    path = write_handbook_config(tmp_path, lambda d: d["window_features"].update(label_delay_days=3))
    with pytest.raises(ConfigError, match=r"window_features\.label_delay_days \(3\) is shorter than "
                                          r"data\.split\.delay_days \(7\).*at least 7"):
        load_config(path, base=tmp_path)
    longer = write_handbook_config(tmp_path, lambda d: d["window_features"].update(label_delay_days=10))
    assert load_config(longer, base=tmp_path).window_features.label_delay_days == 10  # conservative: allowed


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["window_features"].update(terminal_key="merchant_id"),
     r"window_features\.terminal_key: column 'merchant_id' is not produced by the privacy policy"),
    (lambda d: d["window_features"].update(amount="is_fraud", label="amount"),
     r"window_features\.label: column 'amount' has dtype float; it needs int"),
    (lambda d: d["window_features"].update(label_delay_days=0), r"window_features\.label_delay_days: .*>= 1|"
                                                                r"greater than or equal to 1"),
    (lambda d: d["data"].update(partition_feature="card_id"),
     r"data\.partition_feature: a time split divides rows by day.*remove partition_feature"),
    (lambda d: d["data"].update(input_pattern="*.csv"), r"data\.split: a time split reads spans"),
    (lambda d: d["data"]["features"].update(during_night="float"),
     r"data\.features\.during_night: the window feature is emitted as int, not float"),
    (lambda d: [d.pop("window_features"), d.pop("sequence_features"),
                d["data"].update(features={"amount": "float"})],
     r"data\.split: a time split needs window_features"),
    (lambda d: d["sequence_features"].update(features=["amount", "is_fraud"]),
     r"sequence_features\.features lists the label 'is_fraud'"),
])
def test_inconsistent_window_features_and_time_split_are_refused(tmp_path: Path, mutate, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_handbook_config(tmp_path, mutate), base=tmp_path)


def test_window_features_can_be_model_inputs(tmp_path: Path) -> None:
    path = write_handbook_config(tmp_path, lambda d: d["data"]["features"].update(
        terminal_risk_7d="float", customer_nb_tx_1d="float", during_weekend="int"))
    assert load_config(path, base=tmp_path).data.features["terminal_risk_7d"].value == "float"


def test_an_overridden_end_span_is_checked_before_the_run(tmp_path: Path) -> None:
    config = load_config(write_handbook_config(tmp_path, spans=range(1, 46)), base=tmp_path)
    for span in range(1, 46):  # the headers the privacy policy expects
        (tmp_path / "data" / "fraud_handbook" / f"span-{span:04d}" / "transactions.csv").write_text(
            ",".join(config.privacy.columns) + "\n")
    assert len(check_data_columns(config)) == 45
    with pytest.raises(ConfigError, match=r"window_features\.label_delay_days: .*only 3 day\(s\) before the train"):
        check_data_columns(config.with_overrides({"data.split.end_span": 24}))


def test_the_fraud_configs_never_score_the_label_timestamp_or_ids() -> None:
    from pipeline.config import drift_exclusions

    repo = Path(__file__).resolve().parents[2]
    excluded = drift_exclusions(load_config(repo / "configs/fraud.yaml"))
    assert {"is_fraud", "timestamp", "transaction_id"} <= set(excluded)
    assert excluded["is_fraud"] == "the label" and excluded["transaction_id"] == "validation.drift_skip_features"
    assert drift_exclusions(load_config(repo / "configs/breast_cancer.yaml")) == {"malignant": "the label"}
