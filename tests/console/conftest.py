"""The console's inputs, built directly (no pipeline run): two pushed demo SavedModels, an MLMD store
holding their eval rows, an MLflow registry with both versions and their aliases, report files, a
running model server, and the console itself on a free loopback port."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from console.settings import ConsoleSettings

MODEL = "cards"
FEATURES = ("feature_0", "feature_1", "feature_2", "feature_3")
LABEL = "is_fraud"
EVAL_ROWS = 240
REVIEWER, APPROVER = ("rita.reviewer", "r" * 32), ("alan.approver", "a" * 32)
# serving version -> (bias of the demo model, headline metrics, one slice's metrics, DP epsilon)
VERSIONS = {
    "100": (0.0, {"auc": 0.9412, "auc_precision_recall": 0.8123, "example_count": 240.0},
            {"auc": 0.9100, "example_count": 120.0}, None),
    "200": (0.8, {"auc": 0.9530, "auc_precision_recall": 0.8304, "example_count": 240.0},
            {"auc": 0.8870, "example_count": 120.0}, 2.75),
}
SLICE = "merchant_group_online"


@dataclass(frozen=True)
class Setup:
    root: Path
    settings: ConsoleSettings
    model_config_file: Path
    examples_id: int
    rest_url: str
    grpc_target: str


def _eval_rows(folder: Path) -> Path:
    """A gzipped TFRecord eval split as ExampleGen writes it, with a label that follows feature_0."""
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    split = folder / "Split-eval"
    split.mkdir(parents=True)
    rng = np.random.default_rng(3)
    with tf.io.TFRecordWriter(str(split / "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for _ in range(EVAL_ROWS):
            example = example_pb2.Example()
            values = rng.normal(size=len(FEATURES))
            for name, value in zip(FEATURES, values, strict=True):
                example.features.feature[name].float_list.value.append(float(value))
            example.features.feature[LABEL].int64_list.value.append(int(values[0] + rng.normal(scale=0.5) > 0))
            writer.write(example.SerializeToString())
    return folder


def _mlmd(path: Path, examples: Path) -> int:
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2 as mpb

    config = mpb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = mpb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = mlmd.MetadataStore(config)
    type_id = store.put_artifact_type(mpb.ArtifactType(name="Examples"))
    [artifact_id] = store.put_artifacts([mpb.Artifact(type_id=type_id, uri=str(examples))])
    return artifact_id


def _registry(root: Path, base_path: Path, examples_id: int) -> str:
    """Both versions logged and registered as the pipeline does (the second is the challenger); 1 is champion."""
    from tracking.registry import apply_move, plan_promote
    from tracking.run_logger import log_pipeline_run
    from tracking.run_record import PipelineRunRecord, Registration
    from tracking.store import connect, experiment_id, local_target

    target = local_target(root / "mlflow")
    client = connect(target)
    experiment = experiment_id(client, target, "cards")
    for serving, (_bias, overall, one_slice, epsilon) in VERSIONS.items():
        metrics = {f"eval.{name}": value for name, value in overall.items()}
        if epsilon is not None:
            metrics["training.dp_epsilon"] = epsilon
        history = {"train.loss": [(0, 0.69), (1, 0.41), (2, 0.33)], "validation.loss": [(0, 0.66), (1, 0.45), (2, 0.4)]}
        record = PipelineRunRecord(
            run_key=f"cards-{serving}", run_name=f"cards {serving}", metrics=metrics, metric_history=history,
            params={"data.input_sha256": (serving * 22)[:64]},
            tags={"blessed": "yes", "blessed_reason": "all gates passed", "mlmd.examples_id": str(examples_id)},
            json_artifacts={"evaluation/metrics.json": {"candidate": {"": overall, SLICE: one_slice},
                                                        "baseline": {}, "diff": {}}},
            registration=Registration(MODEL, serving, base_path / serving))
        log_pipeline_run(client, experiment, record)
    apply_move(client, plan_promote(client, MODEL, "1"))
    return target.uri


def _reports(folder: Path) -> Path:
    from evidence.drift_report import DriftReport, write_drift_report

    write_drift_report(DriftReport(MODEL, "version 100", "version 200", "2026-01-01T00:00:00Z", [], None),
                       folder / "drift-100-200")
    (folder / "100").mkdir(parents=True)
    (folder / "100" / "lgpd_report.html").write_text(
        "<!doctype html><title>LGPD report</title><h1 data-fact='version'>100</h1><p>Callers: ana.analyst</p>")
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from serving.demo_model import export_demo_model
    from tests.serving.serving_helpers import start_server, write_config

    root = tmp_path_factory.mktemp("console")
    base_path = root / "serving"
    for serving, (bias, *_rest) in VERSIONS.items():
        export_demo_model(base_path, int(serving), features=FEATURES, hidden_units=4, bias=bias, seed=1)
    examples_id = _mlmd(root / "metadata.sqlite", _eval_rows(root / "examples"))
    tracking_uri = _registry(root, base_path, examples_id)
    config_file = write_config(root / "models.config", {MODEL: str(base_path)},
                               labels={MODEL: {"stable": 100, "canary": 200}})
    tokens = {}
    for role, (caller, token) in (("reviewer", REVIEWER), ("approver", APPROVER)):
        tokens[role] = root / f"{role}.tokens"
        tokens[role].write_text(f"{caller}:{token}\n")
    server = start_server(root, f"--model_config_file={config_file}")
    settings = ConsoleSettings(
        model_name=MODEL, tracking_uri=tracking_uri, base_path=base_path, model_config_file=config_file,
        server_url=server.rest_url, grpc_server=server.grpc_target, audit_log=root / "audit" / "console.jsonl",
        reviewer_tokens=str(tokens["reviewer"]), approver_tokens=str(tokens["approver"]),
        metadata_path=root / "metadata.sqlite", reports_folder=_reports(root / "reports"), label_key=LABEL,
        eval_rows=EVAL_ROWS)
    try:
        yield Setup(root, settings, config_file, examples_id, server.rest_url, server.grpc_target)
    finally:
        server.stop()


class ConsoleServer:
    """The console app on uvicorn in a thread on a free loopback port; stopped by the test that started it."""

    def __init__(self, settings: ConsoleSettings) -> None:
        import uvicorn

        from console.app import create_app
        from serving.server import pick_free_port

        self.port = pick_free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the console did not start within 30 s")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
