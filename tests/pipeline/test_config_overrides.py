"""--set overrides re-derive what loading derived: paths the file left unset follow the new values."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_a_new_pipeline_root_moves_the_derived_trainer_backups(tmp_path: Path) -> None:
    config = load_config(REPO / "configs/breast_cancer.yaml", base=tmp_path)
    assert config.training.backup_root == config.pipeline.root / "_trainer_backups"
    moved = config.with_overrides({"pipeline.root": str(tmp_path / "elsewhere")})
    assert moved.pipeline.root == tmp_path / "elsewhere"
    assert moved.training.backup_root == tmp_path / "elsewhere" / "_trainer_backups"


def test_a_new_model_name_moves_the_derived_schema_path_beside_the_config(tmp_path: Path) -> None:
    config = load_config(REPO / "configs/breast_cancer.yaml", base=tmp_path)
    renamed = config.with_overrides({"serving.model_name": "renamed"})
    assert renamed.validation.schema_file == REPO / "configs" / "schemas" / "renamed" / "schema.pbtxt"


def test_values_set_explicitly_are_kept_through_overrides(tmp_path: Path) -> None:
    config = load_config(REPO / "configs/breast_cancer.yaml", base=tmp_path).with_overrides(
        {"training.backup_root": str(tmp_path / "backups")})
    again = config.with_overrides({"pipeline.root": str(tmp_path / "other")})
    assert again.training.backup_root == tmp_path / "backups"
    assert again.with_overrides({"training.train_steps": 7}).training.train_steps == 7
