"""Fixtures: one small trained SavedModel with its train/eval TFRecords, shared by the session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest
from small_model import SmallModel, export_small_model


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> SmallModel:
    return export_small_model(tmp_path_factory.mktemp("optimization"))
