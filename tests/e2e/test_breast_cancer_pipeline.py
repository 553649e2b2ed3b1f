"""The whole production line on real data: CLI run → pushed SavedModel → predictions → MLMD lineage."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from components.serving_pusher.executor import PER_SAVE_FILES, PUSH_ADDED_FILES
from evidence import lineage
from orchestration.data_checkout import DVC
from pipeline.config import UseCaseConfig, load_config
from pipeline.report import RunReport, load_report
from privacy.data_version import read_data_version
from tests.airflow.airflow_env import dvc

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FEW_STEPS = {"training": {"train_steps": 150, "eval_steps": 10}}
# The TFLite optimizer runs in the first run only (the other workspaces leave it out): few calibration
# rows and timed calls keep it cheap; the variants, routes and gate are what is checked.
OPTIMIZE = {"optimization": {"representative_examples": 20, "latency_repeats": 3}}


@dataclass
class Workspace:
    root: Path
    config_path: Path
    config: UseCaseConfig


def make_workspace(root: Path, overrides: dict) -> Workspace:
    """A use-case config under ``root`` whose data and outputs live there too."""
    data = yaml.safe_load((REPO / "configs" / "breast_cancer.yaml").read_text())
    if "optimization" not in overrides:
        data["optimization"] = None  # no ModelOptimizer: it is measured once, in first_run
    for section, values in overrides.items():
        data[section].update(values)
    config_path = root / "breast_cancer.yaml"
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))
    esteira(root, "data", "breast-cancer", "--out", "data/breast_cancer")
    return Workspace(root, config_path, load_config(config_path, base=root))


def esteira(cwd: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == expect, f"esteira {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


def versions(base: Path) -> list[Path]:
    return sorted(p for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, RunReport, str]:
    """The data under DVC (as a team versions it), then `esteira run`."""
    workspace = make_workspace(tmp_path_factory.mktemp("breast_cancer"), {**FEW_STEPS, **OPTIMIZE})
    assert DVC.exists(), "no .venv-airflow (DVC lives there): run `make airflow-install` (.ci/run does)"
    dvc(workspace.root, "init", "--no-scm", "-q")
    dvc(workspace.root, "add", "-q", "data/breast_cancer")
    result = esteira(workspace.root, "run", "--config", str(workspace.config_path))
    report = load_report(workspace.config.pipeline.metadata_path, workspace.config.pipeline.name)
    return workspace, report, result.stdout


def eval_split_examples(workspace: Workspace, report: RunReport) -> list[bytes]:
    store = lineage.open_store(workspace.config.pipeline.metadata_path)
    example_gen = next(e for e in report.executions if e.node == "CsvExampleGen")
    examples = lineage.output_artifacts(store, example_gen.execution_id, "examples")[0]
    records: list[bytes] = []
    for path in sorted(Path(examples.uri, "Split-eval").glob("*.gz")):
        records.extend(r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP"))
    return records


def test_every_component_completes_and_report_is_printed(first_run) -> None:
    _workspace, report, stdout = first_run
    nodes = {e.node: e.state for e in report.executions}
    for node in ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform",
                 "Trainer", "Evaluator", "ModelValidator", "ModelOptimizer", "Pusher", "GovernanceReport",
                 "MlflowLogger"):
        assert nodes.get(node) == "COMPLETE", (node, nodes)
    assert "pushed: version" in stdout and "eval AUC" in stdout


def run_log(output: str) -> Path:
    """The log file `esteira run` says it wrote."""
    found = re.search(r"^esteira: full log of this run: (.+)$", output, re.MULTILINE)
    assert found, output[-2000:]
    return Path(found.group(1))


def test_each_component_has_a_start_and_an_end_line_and_the_run_log_is_kept(first_run) -> None:
    """As the run goes: one line as each component starts and one as it ends (state, time, running total),
    matching what MLMD recorded; TFX's whole log in <pipeline root>/../logs/<run id>.log."""
    workspace, report, stdout = first_run
    started = re.findall(r"^esteira: \[\s*(\d+)/(\d+)\] (\S+) started \(total \d+ s\)$", stdout, re.MULTILINE)
    ended = re.findall(r"^esteira: \[\s*\d+/\d+\] (\S+) (\w+) in [\d.]+ s \(total (\d+) s\)$", stdout, re.MULTILINE)
    recorded = [(e.node, e.state.lower()) for e in report.executions]
    assert [node for _index, _total, node in started] == [node for node, _state in recorded]
    assert [(int(index), int(total)) for index, total, _node in started] == [
        (i, len(recorded)) for i in range(1, len(recorded) + 1)]
    assert [(node, state) for node, state, _total in ended] == recorded
    totals = [int(total) for _node, _state, total in ended]
    assert totals == sorted(totals)
    for node, _state in recorded:  # each component's end follows its start
        assert stdout.index(f"] {node} started") < stdout.index(f"] {node} {dict(recorded)[node]} in")
    log = run_log(stdout)
    assert log == workspace.config.pipeline.root.parent / "logs" / f"{report.run_id}.log"
    text = log.read_text()
    assert all(node in text for node, _state in recorded) and report.run_id in text


def test_pushed_model_is_under_serving_base_path(first_run) -> None:
    workspace, report, _ = first_run
    pushed = versions(workspace.config.serving.base_path)
    assert len(pushed) == 1 and (pushed[0] / "saved_model.pb").is_file()
    assert report.pushed and report.version == pushed[0].name
    from serving.observability.drift import read_reference

    reference = read_reference(pushed[0])  # the server's drift metrics compare requests with this
    assert reference is not None and set(reference) == set(workspace.config.data.features)
    assert all(ref.counts.sum() > 300 for ref in reference.values())  # the train split's rows


def test_eval_auc_clears_the_gate(first_run) -> None:
    _workspace, report, _ = first_run
    assert report.blessed is True
    assert report.metrics["auc"] >= 0.95
    assert report.metrics["example_count"] > 50


def test_both_signatures_answer_and_agree(first_run) -> None:
    workspace, report, _ = first_run
    model = tf.saved_model.load(str(versions(workspace.config.serving.base_path)[0]))
    records = eval_split_examples(workspace, report)[:16]
    assert records, "no eval examples found"
    from_examples = model.signatures["serving_default"](examples=tf.constant(records))["probability"]

    spec = {name: tf.io.FixedLenFeature([], tf.float32) for name in workspace.config.data.features}
    raw = tf.io.parse_example(tf.constant(records), spec)
    from_raw = model.signatures["serving_raw"](**raw)["probability"]

    assert from_examples.shape == (len(records), 1)
    assert np.all((from_examples.numpy() >= 0) & (from_examples.numpy() <= 1))
    np.testing.assert_allclose(from_examples.numpy(), from_raw.numpy(), rtol=1e-5, atol=1e-6)


def test_the_readmes_request_is_answered_by_the_pushed_model(first_run) -> None:
    """docs/requests/breast_cancer.json, the body the README sends (scikit-learn's first case, malignant)."""
    workspace, _, _ = first_run
    signature = tf.saved_model.load(str(versions(workspace.config.serving.base_path)[0])).signatures["serving_raw"]
    row = json.loads((REPO / "docs" / "requests" / "breast_cancer.json").read_text())["instances"][0]
    assert set(row) == set(workspace.config.data.features)
    probability = signature(**{name: tf.constant([value], tf.float32) for name, value in row.items()})["probability"]
    assert probability.numpy()[0, 0] > 0.5  # the case is malignant, and the model has learned that much


def test_tflite_variants_are_measured_and_the_gated_one_is_in_the_pushed_version(first_run) -> None:
    """Every variant of the raw-feature signature (Transform graph inside) converted or reported with the
    converter's reason; the table on the artifact and in the run report; model.tflite only if it passed."""
    workspace, report, stdout = first_run
    table = report.optimization
    rows = {row["variant"]: row for row in table["rows"]}
    assert list(rows) == ["saved_model", "float32", "float16", "dynamic_int8", "full_int8"]
    assert table["signature"] == "serving_raw" and table["eval_rows"] > 50 and table["calibration_rows"] == 20
    for name, row in rows.items():
        assert row["converted"] or row["failure"], row  # never skipped silently
        if name != "saved_model" and row["converted"]:
            assert row["route"] in ("builtins", "select_tf_ops")
        if name != "saved_model" and not row["failure"]:
            assert row["passed"] == (rows["saved_model"]["auc"] - row["auc"] <= table["max_auc_drop"])
            assert row["latency_ms_1_row"] > 0 and row["latency_ms_64_rows"] > 0 and row["file_bytes"] > 0
    assert rows["float32"]["converted"] and rows["float32"]["max_abs_score_diff"] < 1e-4
    version = versions(workspace.config.serving.base_path)[0]
    if table["published"]:
        assert rows[table["published"]]["passed"]
        optimizer = next(e for e in report.executions if e.node == "ModelOptimizer")
        store = lineage.open_store(workspace.config.pipeline.metadata_path)
        artifact = lineage.output_artifacts(store, optimizer.execution_id, "optimized_model")[0]
        published = Path(artifact.uri) / f"{table['published']}.tflite"
        assert (version / "model.tflite").read_bytes() == published.read_bytes()
    else:
        assert not (version / "model.tflite").exists()
    assert f"TFLite optimization: {table['publish_reason']}" in stdout and "| full_int8 |" in stdout


def test_mlmd_lineage_from_pushed_model_to_examples(first_run) -> None:
    workspace, report, _ = first_run
    store = lineage.open_store(workspace.config.pipeline.metadata_path)
    pushed = lineage.pushed_models(store)
    assert len(pushed) == 1
    trace = lineage.trace_pushed_model(store, pushed[0])
    assert lineage.artifact_type(store, trace.model) == "Model"
    assert lineage.artifact_type(store, trace.blessing) == "ModelBlessing"
    assert trace.blessing.custom_properties["blessed"].int_value == 1
    assert lineage.artifact_type(store, trace.examples) == "Examples"
    assert lineage.node_name(store, lineage.producer(store, trace.examples.id)) == "CsvExampleGen"
    assert lineage.node_name(store, lineage.producer(store, trace.model.id)) == "Trainer"
    assert trace.pushed_model.custom_properties["pushed_version"].string_value == report.version
    assert trace.model.custom_properties["training_seed"].int_value == workspace.config.training.seed


def _mlflow_runs_and_versions(workspace: Workspace) -> tuple[int, int]:
    from tracking.store import LOCAL_FOLDER, connect, local_target

    client = connect(local_target(workspace.config.pipeline.root / LOCAL_FOLDER))
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000)
    return len(runs), len(client.search_model_versions(f"name = '{workspace.config.serving.model_name}'"))


def test_second_run_hits_cache_and_does_not_republish(first_run) -> None:
    """Writing the data again (same bytes) and rerunning publishes, logs and registers nothing new."""
    workspace, first, _ = first_run
    data_file = workspace.root / "data" / "breast_cancer" / "breast_cancer.csv"
    written_at, tracked = data_file.stat().st_mtime_ns, _mlflow_runs_and_versions(workspace)
    esteira(workspace.root, "data", "breast-cancer", "--out", "data/breast_cancer")
    assert data_file.stat().st_mtime_ns == written_at  # the same content: the file is left as it was
    result = esteira(workspace.root, "run", "--config", str(workspace.config_path))
    report = load_report(workspace.config.pipeline.metadata_path, workspace.config.pipeline.name)
    assert report.run_id != first.run_id
    assert {"CsvExampleGen", "Transform", "Trainer"} <= set(report.cached)
    assert report.pushed is False and "identical to the served version" in report.push_reason
    assert len(versions(workspace.config.serving.base_path)) == 1
    assert "cache hits" in result.stdout and "pushed: no" in result.stdout
    assert _mlflow_runs_and_versions(workspace) == tracked


def differing_files(candidate: Path, served: Path, ignore: tuple[str, ...]) -> list[str]:
    """Relative paths whose bytes differ, or that only one side has (``ignore`` left out)."""
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and str(p.relative_to(root)) not in ignore}

    ours, theirs = files(candidate), files(served)
    return sorted(name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name))


def test_dvc_checkout_and_a_fresh_run_reproduce_the_pushed_model(first_run, tmp_path: Path) -> None:
    """The data moves on to a new DVC version; `esteira data checkout` of the version the pushed model names,
    then `esteira run` in a fresh pipeline root and MLMD (nothing cached), trains the same model (graph,
    variables and assets byte for byte) and publishes no new version. The DVC project is a copy, so the
    workspace's data keeps its bytes and mtimes (later tests rely on its cache hits)."""
    workspace, first, _ = first_run
    config = workspace.config
    [served] = versions(config.serving.base_path)
    store = lineage.open_store(config.pipeline.metadata_path)
    example_gen = next(e for e in first.executions if e.node == "CsvExampleGen")
    [examples] = lineage.output_artifacts(store, example_gen.execution_id, "examples")
    recorded = examples.custom_properties["dvc_md5"].string_value
    project = tmp_path / "project"
    for part in (".dvc", "data"):
        shutil.copytree(workspace.root / part, project / part, symlinks=True)
    source = project / "data" / "breast_cancer"
    named = read_data_version(source)
    assert named is not None and named.matches and named.recorded_md5 == recorded
    table = source / "breast_cancer.csv"
    original = table.read_bytes()
    table.unlink()  # DVC may link the cache; never write through to it
    table.write_bytes(original[:original.rindex(b"\n", 0, len(original) - 1) + 1])  # the last case dropped
    dvc(project, "add", "-q", "data/breast_cancer")
    assert read_data_version(source).recorded_md5 != recorded

    esteira(project, "data", "checkout", "data/breast_cancer", "--dvc-md5", recorded)
    assert table.read_bytes() == original
    rerun = esteira(workspace.root, "run", "--config", str(workspace.config_path),
                    "--set", f"data.source={source}", "--set", f"pipeline.root={tmp_path / 'pipeline'}",
                    "--set", f"pipeline.metadata_path={tmp_path / 'metadata.db'}",
                    "--set", "optimization=null")  # TFLite variants are no part of the identity check
    assert f"pushed: no — identical to the served version {served.name}" in rerun.stdout, rerun.stdout[-3000:]
    assert versions(config.serving.base_path) == [served]
    [trained] = (tmp_path / "pipeline" / "Trainer" / "model").glob("*/Format-Serving")
    assert differing_files(trained, served, PUSH_ADDED_FILES + PER_SAVE_FILES) == []


def test_tfx_cli_creates_and_runs_the_pipeline(first_run) -> None:
    """TFX's own CLI executes pipeline/local_runner.py against the same workspace and records a run."""
    workspace, _first, _ = first_run
    store = lineage.open_store(workspace.config.pipeline.metadata_path)
    runs_before = len(store.get_contexts_by_type(lineage.RUN_CONTEXT))
    env = dict(os.environ, ESTEIRA_CONFIG=str(workspace.config_path),
               LOCAL_HOME=str(workspace.root / "tfx_home"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    tfx = str(Path(sys.executable).parent / "tfx")
    for args in (["pipeline", "create", "--engine", "local",
                  "--pipeline_path", str(REPO / "pipeline" / "local_runner.py")],
                 ["run", "create", "--engine", "local", "--pipeline_name", workspace.config.pipeline.name]):
        result = subprocess.run([tfx, *args], cwd=workspace.root, env=env, capture_output=True, text=True,
                                timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
    store = lineage.open_store(workspace.config.pipeline.metadata_path)
    assert len(store.get_contexts_by_type(lineage.RUN_CONTEXT)) == runs_before + 1
    report = load_report(workspace.config.pipeline.metadata_path, workspace.config.pipeline.name)
    assert not report.failed and "Trainer" in report.cached and report.blessed is True


# The gates and the Beam runner below run last on the first run's workspace: each adds a run the tests above
# do not expect.

def test_model_validator_blesses_before_the_push(first_run) -> None:
    workspace, report, stdout = first_run
    order = [e.node for e in report.executions]
    assert order.index("Evaluator") < order.index("ModelValidator") < order.index("Pusher")
    facts = report.model_validation
    assert facts["blessed"] == 1 and facts["reasons"] == "" and facts["non_finite_variables"] == 0
    # every signature that outputs the probability answers alike, the explain signature's included
    assert facts["signatures"] == "serving_default,serving_raw" and facts["max_signature_difference"] < 1e-4
    assert 0 < facts["latency_p95_ms"] <= facts["latency_budget_ms"]
    assert facts["latency_budget_ms"] == workspace.config.model_validation.latency_budget_ms
    assert "model validation: passed" in stdout
    store = lineage.open_store(workspace.config.pipeline.metadata_path)
    pusher = next(e for e in report.executions if e.node == "Pusher")
    assert len(lineage.input_artifacts(store, pusher.execution_id, "infra_blessing")) == 1


def test_relative_improvement_gate_refuses_a_candidate_no_better_than_its_baseline(first_run) -> None:
    workspace, _first, _ = first_run
    result = esteira(workspace.root, "run", "--config", str(workspace.config_path),
                     "--set", "evaluation.auc_relative_improvement=0.01")
    report = load_report(workspace.config.pipeline.metadata_path, workspace.config.pipeline.name)
    gate = report.gate
    assert gate is not None and gate.metric == "auc"
    assert "Trainer" in report.cached and gate.baseline == pytest.approx(gate.value)  # the same model
    assert gate.relative_threshold == pytest.approx(0.01) and gate.relative_change == pytest.approx(0.0, abs=1e-9)
    assert dict(gate.verdicts()) == {
        f"AUC {gate.value:.4f} vs floor {gate.lower_bound:g}": True,
        "change +0.0000 vs allowed -0.01": True,
        "relative change +0.00% vs required +1.00%": False}
    assert report.blessed is False and report.pushed is False
    assert "relative change +0.00% vs required +1.00%: FAIL" in result.stdout
    assert "blessed: no" in result.stdout and "not blessed by the Evaluator" in result.stdout


def test_frozen_schema_is_imported_and_its_anomalies_stop_the_run_before_transform(first_run) -> None:
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    workspace, _first, _ = first_run
    schema_file = workspace.root / "schemas" / "breast_cancer" / "schema.pbtxt"
    result = esteira(workspace.root, "schema", "freeze", "--config", str(workspace.config_path))
    assert str(schema_file) in result.stdout
    schema = text_format.Parse(schema_file.read_text(), schema_pb2.Schema())
    assert {f.name for f in schema.feature} == {"malignant", *workspace.config.data.features}
    refused = esteira(workspace.root, "schema", "freeze", "--config", str(workspace.config_path), expect=2)
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    try:
        # Curate: mean_area is in the hundreds, so a domain up to 100 is broken in both splits.
        curated = next(f for f in schema.feature if f.name == "mean_area")
        curated.float_domain.max = 100.0
        schema_file.write_text(text_format.MessageToString(schema))
        failed = esteira(workspace.root, "run", "--config", str(workspace.config_path),
                         "--set", "validation.on_anomaly=fail", expect=1)
        report = load_report(workspace.config.pipeline.metadata_path, workspace.config.pipeline.name)
        nodes = {e.node: e.state for e in report.executions}
        assert nodes["SchemaGen"] == "COMPLETE" and nodes["ExampleValidator"] == "FAILED"
        assert "Transform" not in nodes and "Pusher" not in nodes
        assert ("DataAnomaliesError: data validation found 2 anomalies; the pipeline stopped before Transform"
                in failed.stderr)
        assert "[train] feature 'mean_area': Out-of-range values" in failed.stderr
        assert "[eval] feature 'mean_area': Out-of-range values" in failed.stderr
        log = run_log(failed.stderr)  # the failed run's log too, named after its run
        assert log.name == f"{report.run_id}.log" and "ExampleValidator" in log.read_text()
        assert "cuInit" not in failed.stderr and "cudart_stub" not in failed.stderr  # in the log, not the terminal
        warned = esteira(workspace.root, "run", "--config", str(workspace.config_path))  # warn: today's behaviour
        assert "data validation: 2 anomalies (on_anomaly warn" in warned.stdout
    finally:
        schema_file.unlink()


def test_beam_dag_runner_retrains_and_pushes_a_model(first_run) -> None:
    """Last: Beam's orchestrator on the same workspace reuses the cached data nodes, retrains and pushes."""
    workspace, _first, _ = first_run
    before = versions(workspace.config.serving.base_path)
    esteira(workspace.root, "run", "--config", str(workspace.config_path), "--runner", "beam",
            "--set", "training.train_steps=30", "--set", "evaluation.auc_lower_bound=0.5",
            "--set", "evaluation.auc_change_threshold=-1.0")
    report = load_report(workspace.config.pipeline.metadata_path, workspace.config.pipeline.name)
    assert {"CsvExampleGen", "Transform"} <= set(report.cached) and "Trainer" not in report.cached
    assert report.pushed is True and not report.failed
    assert len(versions(workspace.config.serving.base_path)) == len(before) + 1
    assert (workspace.config.serving.base_path / report.version / "saved_model.pb").is_file()
