"""Explanation latency beside Predict on the same model: the fraud CNN+LSTM, 1 and 64 rows, over REST.

Takes the latest pushed fraud version (``serving.base_path`` of the config) and the Transform graph of
the same pipeline root, and exports them again with the current signatures (``models/fraud/signatures.py``:
serving_raw and explain, with the config's ``model.explain`` settings) into a temporary base path, so a
model trained before the explain signature existed is measured as the Trainer now exports it. Rows are
the first eval examples of the latest AnonymizingExampleGen output, sent as serving_raw's named inputs.
One in-process server (serving.server.start_in_thread); for each batch size, ``--repeats`` interleaved
pairs of ``:predict`` (serving_raw) and ``:explain`` after 3 warm-up pairs; medians and 90th percentiles
with the machine, the date, the load average and the command go to explain_latency.json and
EXPLAIN_LATENCY.md.

    python benchmarks/serving/explain_latency.py [--config configs/fraud.yaml] [--repeats 30]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

MODEL = "fraud"


def latest(folder: Path) -> Path:
    children = sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not children:
        raise SystemExit(f"no pushed version under {folder}; run `make demo-fraud` first")
    return children[-1]


def export_with_explain(config_path: Path, out: Path) -> tuple[Path, dict[str, Any]]:
    """The latest pushed version re-exported with today's signatures; returns its folder and the facts used."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from models.common.explain import write_metadata
    from models.fraud.model import to_model_inputs
    from models.fraud.signatures import explain_groups, make_serving_signatures
    from pipeline.config import load_config

    config = load_config(config_path)
    settings = config.trainer_settings()
    pushed = latest(config.serving.base_path)
    transform_dir = latest(config.pipeline.root / "Transform" / "transform_graph")
    model = tf.keras.models.load_model(str(pushed), compile=False)
    transform_output = tft.TFTransformOutput(str(transform_dir))
    signatures = make_serving_signatures(model, transform_output, settings,
                                         lambda transformed: to_model_inputs(settings, transformed))
    export = out / MODEL / "1"
    model.save(str(export), save_format="tf", signatures=signatures, include_optimizer=False)
    write_metadata(str(export), explain_groups(settings, model.input_names), settings.model.explain,
                   settings.decision_threshold)
    return export, {"pushed_version": pushed.name, "transform_graph": str(transform_dir),
                    "explain_steps": settings.model.explain.steps}


def eval_instances(config_path: Path, export: Path, count: int) -> list[dict[str, Any]]:
    """serving_raw rows from the latest eval split, by the signature's own input names and shapes."""
    import tensorflow as tf

    from pipeline.config import load_config

    config = load_config(config_path)
    split = latest(config.pipeline.root / "AnonymizingExampleGen" / "examples") / "Split-eval"
    specs = tf.saved_model.load(str(export)).signatures["serving_raw"].structured_input_signature[1]
    feature_spec = {name: tf.io.FixedLenFeature([] if spec.shape.rank == 1 else spec.shape[1:], spec.dtype)
                    for name, spec in specs.items()}
    files = [str(p) for p in split.glob("*")]
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(count):
        parsed = tf.io.parse_single_example(record, feature_spec)
        row = {}
        for name, value in parsed.items():
            array = np.asarray(value.numpy())
            row[name] = array.tolist() if array.ndim else array.item()
            if isinstance(row[name], bytes):
                row[name] = row[name].decode()
            elif isinstance(row[name], list) and row[name] and isinstance(row[name][0], bytes):
                row[name] = [item.decode() for item in row[name]]
        rows.append(row)
    return rows


def timed(client: httpx.Client, url: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = client.post(url, json=body)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}: {response.text[:300]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "fraud.yaml")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    from serving.flags import parse_flags
    from serving.server import pick_free_port, start_in_thread

    with tempfile.TemporaryDirectory(prefix="esteira-explain-bench-") as tmp:
        base = Path(tmp)
        export, facts = export_with_explain(args.config, base)
        instances = eval_instances(args.config, export, 64)
        (base / "models.config").write_text(
            f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base / MODEL}" '
            'model_platform: "tensorflow" } }\n')
        server = start_in_thread(parse_flags([f"--port={pick_free_port()}", f"--rest_api_port={pick_free_port()}",
                                              "--host=127.0.0.1", f"--model_config_file={base / 'models.config'}"]))
        results: dict[str, Any] = {}
        try:
            url = f"{server.rest_url}/v1/models/{MODEL}"
            with httpx.Client(timeout=120) as client:
                for rows in (1, 64):
                    batch = instances[:rows]
                    predict = {"signature_name": "serving_raw", "instances": batch}
                    explain = {"instances": batch}
                    for _ in range(3):
                        timed(client, f"{url}:predict", predict)
                        timed(client, f"{url}:explain", explain)
                    times: dict[str, list[float]] = {"predict": [], "explain": []}
                    for _ in range(args.repeats):
                        times["predict"].append(timed(client, f"{url}:predict", predict))
                        times["explain"].append(timed(client, f"{url}:explain", explain))
                    answer = client.post(f"{url}:explain", json=explain).json()["predictions"]
                    gaps = [abs(row["completeness_error"]) for row in answer]
                    results[str(rows)] = {
                        name: {"median_ms": round(statistics.median(values), 2),
                               "p90_ms": round(float(np.percentile(values, 90)), 2)} for name, values in times.items()}
                    results[str(rows)]["explain_over_predict"] = round(
                        results[str(rows)]["explain"]["median_ms"] / results[str(rows)]["predict"]["median_ms"], 1)
                    results[str(rows)]["completeness_gap_max"] = round(max(gaps), 5)
                    results[str(rows)]["completeness_gap_mean"] = round(float(np.mean(gaps)), 5)
        finally:
            server.stop()
    record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
              "cpus": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
              "command": "python benchmarks/serving/explain_latency.py " + " ".join(sys.argv[1:]),
              "repeats": args.repeats, **facts, "results": results}
    (HERE / "explain_latency.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = ["# Explanation latency beside Predict (fraud CNN+LSTM, REST, in-process server)", "",
             f"{record['date']}, {record['machine']}, {record['cpus']} CPUs, load average {record['load_average']}, "
             f"`{record['command']}`; pushed version {facts['pushed_version']} re-exported with the explain signature "
             f"({facts['explain_steps']} Gauss-Legendre nodes); medians of {args.repeats} interleaved pairs.", "",
             "| rows | Predict median (p90) ms | Explain median (p90) ms | ratio | completeness gap max / mean |",
             "|---|---|---|---|---|"]
    for rows, row in results.items():
        lines.append(f"| {rows} | {row['predict']['median_ms']} ({row['predict']['p90_ms']}) | "
                     f"{row['explain']['median_ms']} ({row['explain']['p90_ms']}) | {row['explain_over_predict']}x | "
                     f"{row['completeness_gap_max']} / {row['completeness_gap_mean']} |")
    (HERE / "EXPLAIN_LATENCY.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
