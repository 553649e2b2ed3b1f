"""ModelValidator checks against real SavedModels served by `esteira serve` in its own process."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.model_validator.checks import (
    ValidationResult,
    ValidationSettings,
    answer_and_compare,
    model_server,
    non_finite_variables,
    validate_model,
)

FEATURES = ("x1", "x2")


def export_model(path: Path, weights: list[float], raw_offset: float = 0.0, explain_baseline: bool = True) -> Path:
    """A logistic model with serving_default (tf.Examples) and serving_raw (named columns) signatures and an
    explain signature whose one attribution is complete by construction; ``raw_offset`` makes the raw signature
    disagree, ``explain_baseline=False`` drops the baseline score an explanation must answer."""
    module = tf.Module()
    module.weights = tf.Variable(weights, dtype=tf.float32, name="logistic_weights")
    spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in FEATURES}

    def probability(columns: dict[str, tf.Tensor], offset: float) -> dict[str, tf.Tensor]:
        stacked = tf.stack([columns[name] for name in FEATURES], axis=1)
        return {"probability": tf.sigmoid(tf.linalg.matvec(stacked, module.weights) + offset)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return probability(tf.io.parse_example(examples, spec), 0.0)

    @tf.function(input_signature=[{name: tf.TensorSpec([None], tf.float32, name=name) for name in FEATURES}])
    def serve_raw(columns: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return probability(columns, raw_offset)

    @tf.function(input_signature=[{name: tf.TensorSpec([None], tf.float32, name=name) for name in FEATURES}])
    def explain(columns: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        # Sorts before serving_default and answers differently: validation must neither warm up through it
        # without naming it nor count an attribution signature among the predictions it compares.
        score = probability(columns, 3.0)["probability"]
        baseline = probability({name: tf.zeros_like(value) for name, value in columns.items()}, 3.0)["probability"]
        answer = {"probability": score, "attribution_x1": score - baseline}
        return {**answer, "baseline_probability": baseline} if explain_baseline else answer

    tf.saved_model.save(module, str(path), signatures={"serving_default": serve_examples.get_concrete_function(),
                                                       "serving_raw": serve_raw.get_concrete_function(),
                                                       "explain": explain.get_concrete_function()})
    return path


def rows(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(float_list=tf.train.FloatList(value=[float(rng.normal())])) for name in FEATURES
    })).SerializeToString() for _ in range(count)]


@pytest.fixture(scope="module")
def good_server(tmp_path_factory: pytest.TempPathFactory):
    model = export_model(tmp_path_factory.mktemp("good") / "model", [0.5, -1.5])
    with model_server(model, startup_timeout_s=120) as server:
        yield server


def test_nan_weight_is_refused_naming_the_variable(tmp_path: Path) -> None:
    model = export_model(tmp_path / "model", [0.5, float("nan")])
    assert non_finite_variables(model) == ["logistic_weights"]
    result = validate_model(model, rows(3), ValidationSettings(latency_budget_ms=1000))
    assert not result.blessed
    assert result.reasons == ["NaN or Inf in exported variable(s): logistic_weights"]


def test_infinite_weight_is_refused(tmp_path: Path) -> None:
    assert non_finite_variables(export_model(tmp_path / "model", [float("inf"), 1.0])) == ["logistic_weights"]


def test_good_model_answers_within_budget_and_signatures_agree(good_server) -> None:
    result = ValidationResult()
    answer_and_compare(good_server, rows(8), ValidationSettings(latency_budget_ms=5000), result)
    assert result.blessed, result.reasons
    assert result.values["signatures"] == "serving_default,serving_raw"
    assert result.values["requests"] == 16 and result.values["rows"] == 8
    assert 0 < result.values["latency_p50_ms"] <= result.values["latency_p95_ms"] <= 5000
    assert result.values["max_signature_difference"] < 1e-6
    assert result.values["explain_rows"] == 8 and result.values["explain_completeness_max_gap"] < 1e-6


def test_an_explain_signature_that_cannot_be_served_is_refused_naming_it(tmp_path: Path) -> None:
    model = export_model(tmp_path / "model", [0.5, -1.5], explain_baseline=False)
    result = validate_model(model, rows(3), ValidationSettings(latency_budget_ms=5000))
    assert not result.blessed
    assert len(result.reasons) == 1 and result.reasons[0].startswith("the explain signature could not be served")
    assert "baseline_probability" in result.reasons[0]


def test_model_too_slow_for_the_budget_is_refused(good_server) -> None:
    result = ValidationResult()
    answer_and_compare(good_server, rows(4), ValidationSettings(latency_budget_ms=0.001), result)
    assert not result.blessed
    assert len(result.reasons) == 1 and "exceeds the budget of 0.001 ms" in result.reasons[0]


def test_disagreeing_signatures_are_refused_end_to_end(tmp_path: Path) -> None:
    model = export_model(tmp_path / "model", [0.5, -1.5], raw_offset=0.3)
    result = validate_model(model, rows(5), ValidationSettings(latency_budget_ms=5000))
    assert not result.blessed
    assert len(result.reasons) == 1
    assert result.reasons[0].startswith("signatures serving_default and serving_raw disagree by up to")
    assert result.values["non_finite_variables"] == 0 and result.values["load_seconds"] > 0


def test_a_folder_that_is_not_a_saved_model_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "model"
    export_model(broken, [1.0, 1.0])
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    result = validate_model(broken, rows(2), ValidationSettings(latency_budget_ms=5000, startup_timeout_s=60))
    assert not result.blessed and "the model server could not serve the model" in result.reasons[0]


def test_the_validation_server_does_not_outlive_a_killed_run(tmp_path: Path) -> None:
    """A run SIGKILLed while it validates (a test's timeout, an operator) takes its model server with it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    model = export_model(tmp_path / "model", [0.5, -1.5])
    script = ("import sys, time\n"
              "from components.model_validator.checks import model_server\n"
              f"with model_server({str(model)!r}, startup_timeout_s=120) as server:\n"
              "    print(server.pid, flush=True)\n"
              "    time.sleep(600)\n")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[2])
    try:
        server_pid = int(run.stdout.readline())
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{server_pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        state = Path(f"/proc/{server_pid}/stat").read_text().split()[2] if Path(f"/proc/{server_pid}").exists() else ""
        assert state in ("", "Z"), f"validation server {server_pid} still running (state {state}) after its run died"
    finally:
        if run.poll() is None:
            run.kill()
