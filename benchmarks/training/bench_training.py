"""Training throughput of both use cases: non-DP vs each DP-SGD method, none vs mirrored on 1 and 2 devices.

Same run, same data, the production code paths: each use case's real Transform output (breast cancer;
simulated card transactions through the privacy-preserving ExampleGen), read by the Trainer's input
pipeline (models/common/input_pipeline.py), the use case's own network and loss, and
models/common/dp.py for DP-SGD. Every configuration is built and warmed up first (tracing and XLA
compilation excluded); then the timed epochs run round-robin (A, B, C, ..., A, B, C, ...) so that
load from other work spreads over all of them, and the median epoch is reported. Input-only rows
iterate the same training input without training, cached (the default) and streaming.

    python benchmarks/training/bench_training.py [--steps 30] [--rounds 3] [--work DIR]

Writes results.json, results.csv, throughput.png and RESULTS.md (with analysis.md appended) here.
"""
from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import csv
import datetime
import functools
import json
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("non-dp", "fast", "vectorized", "vectorized-no-xla", "microbatch")
STRATEGIES = ("none", "mirrored-1", "mirrored-2")
USE_CASES = {"breast_cancer": REPO / "configs" / "breast_cancer.yaml", "fraud": REPO / "configs" / "fraud.yaml"}
DP_C, DP_Z = 1.0, 1.1


# ---------------------------------------------------------------- data: the pipeline up to Transform

def prepare(work: Path, fraud_transactions: int) -> None:
    """Write each use case's data and run ExampleGen → StatisticsGen → SchemaGen → Transform once."""
    from tfx import v1 as tfx
    from tfx.orchestration.pipeline import RunOptions

    from pipeline.config import load_config
    from pipeline.dag import create_pipeline, trainer_custom_config
    from pipeline.datasets.breast_cancer import write_breast_cancer_csv
    from pipeline.datasets.fraud_simulator import SimulationConfig, simulate

    os.environ.setdefault("ESTEIRA_PSEUDONYM_KEY", secrets.token_hex(32))  # throwaway key, throwaway data
    for name, config_path in USE_CASES.items():
        case = work / name
        if (case / "transform.json").is_file():
            continue
        data = case / "data"
        if name == "breast_cancer":
            write_breast_cancer_csv(data)
        else:
            simulate(SimulationConfig(transactions=fraud_transactions, days=2, seed=11), data, overwrite=True)
        config = load_config(config_path).with_overrides({
            "pipeline.root": str(case / "pipeline"), "pipeline.metadata_path": str(case / "metadata.db"),
            "data.source": str(data), "serving.base_path": str(case / "serving")})
        full = create_pipeline(config)
        example_gen = full.components[0].id
        print(f"[prepare] {name}: running {example_gen} ... Transform", flush=True)
        tfx.orchestration.LocalDagRunner().run(full, run_options=RunOptions(from_nodes=[example_gen],
                                                                            to_nodes=["Transform"]))
        transform = case / "pipeline" / "Transform"
        (case / "transform.json").write_text(json.dumps({
            "examples": str(next((transform / "transformed_examples").iterdir())),
            "transform_graph": str(next((transform / "transform_graph").iterdir())),
            "custom_config": trainer_custom_config(config),
        }, indent=1))


# ---------------------------------------------------------------- the use cases as the Trainer sees them

@dataclass
class UseCase:
    name: str
    batch_size: int
    train_examples: int
    build_model: Callable[[], Any]
    make_loss: Callable[[], Any]
    dataset: Callable[[str], Any]  # cache mode -> repeating batches of (inputs, [batch, 1] label)
    parameters: int = 0


def load_use_case(work: Path, name: str) -> UseCase:
    import tensorflow as tf
    import tensorflow_transform as tft
    from tfx import v1 as tfx
    from tfx.components.util import tfxio_utils

    from models.common.input_pipeline import make_dataset
    from models.common.settings import InputSettings
    from models.common.training import labels_as_column

    facts = json.loads((work / name / "transform.json").read_text())
    config = facts["custom_config"]
    examples = tfx.types.standard_artifacts.Examples()
    examples.uri = facts["examples"]
    examples.split_names = '["train", "eval"]'
    factory = tfxio_utils.get_tf_dataset_factory_from_artifact([examples], [])
    accessor = tfx.components.DataAccessor(tf_dataset_factory=factory, record_batch_factory=None,
                                           data_view_decode_fn=None)
    train_files = [os.path.join(facts["examples"], "Split-train", "*")]
    transform_output = tft.TFTransformOutput(facts["transform_graph"])
    schema = transform_output.transformed_metadata.schema

    if name == "fraud":
        from models.fraud import model as network
        from models.fraud.features import FraudSettings
        settings = FraudSettings.from_custom_config(config)
        sizes = {v: transform_output.vocabulary_size_by_name(v) for v in network.vocabularies(settings)}
        build = lambda: network.build_model(settings, sizes)  # noqa: E731
        make_loss = lambda: network.make_loss(settings)  # noqa: E731
    else:
        from models.tabular import model as network
        from models.tabular.features import TabularSettings, vocabulary_name
        settings = TabularSettings.from_custom_config(config)
        sizes = {n: transform_output.vocabulary_size_by_name(vocabulary_name(n)) for n in settings.categorical_features}
        build = lambda: network.build_model(settings, sizes)  # noqa: E731
        make_loss = lambda: tf.keras.losses.BinaryCrossentropy()  # noqa: E731
    to_inputs = functools.partial(network.model_inputs_and_label, settings)  # what run_fn maps batches to

    def dataset(cache: str) -> Any:
        """The training input exactly as train_and_export receives it."""
        return labels_as_column(make_dataset(
            train_files, accessor, schema, label_key=settings.data.label, batch_size=settings.model.batch_size,
            shuffle=True, seed=settings.training.seed, to_model_inputs=to_inputs,
            options=InputSettings(cache=cache)))  # type: ignore[arg-type]

    rows = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(train_files[0]), compression_type="GZIP"))
    return UseCase(name, settings.model.batch_size, rows, build, make_loss, dataset, build().count_params())


# ---------------------------------------------------------------- timing

def strategy_for(name: str) -> Any:
    import tensorflow as tf
    return {"none": tf.distribute.get_strategy,
            "mirrored-1": lambda: tf.distribute.MirroredStrategy(["/cpu:0"]),
            "mirrored-2": lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])}[name]()


def compile_for(case: UseCase, method: str, strategy: Any) -> Any:
    import tensorflow as tf

    from models.common.dp import compile_dp_model
    from models.common.settings import DPSettings
    with strategy.scope():
        model = case.build_model()
        optimizer = tf.keras.optimizers.Adam(1e-3)
        if method == "non-dp":
            model.compile(optimizer=optimizer, loss=case.make_loss())
            return model
        clipping, _, suffix = method.partition("-")
        settings = DPSettings(l2_norm_clip=DP_C, noise_multiplier=DP_Z, clipping=clipping,  # type: ignore[arg-type]
                              jit_compile=suffix != "no-xla")
        return compile_dp_model(model, settings,
                                optimizer=optimizer, loss=case.make_loss())


def steps_for(method: str, steps: int) -> int:
    """Per-example microbatch loops are ~10-100x slower: fewer steps keep the round short."""
    return max(3, steps // 6) if method == "microbatch" else steps


def probe_crash(work: Path, case: str, method: str) -> dict[str, Any]:
    """Train 3 steps in a child process: a configuration that crashes the process is recorded, not run here."""
    done = subprocess.run([sys.executable, __file__, "--work", str(work), "--probe", case, method],
                          capture_output=True, text=True, timeout=900)
    tail = [line for line in done.stderr.splitlines() if line.strip()][-1:] or [""]
    return {"returncode": done.returncode, "ok": done.returncode == 0, "stderr_tail": tail[0][-300:]}


def probe(work: Path, case_name: str, method: str) -> None:
    case = load_use_case(work, case_name)
    compile_for(case, method, strategy_for("none")).fit(case.dataset("memory"), epochs=1, steps_per_epoch=3,
                                                        verbose=0)
    print("probe finished", flush=True)


def run(work: Path, steps: int, rounds: int) -> dict[str, Any]:
    import tensorflow as tf

    from models.common.dp import DPConfigError

    class EpochTimer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds = time.perf_counter() - self.start

    tf.keras.utils.set_random_seed(0)
    cases = {name: load_use_case(work, name) for name in USE_CASES}
    strategies = {name: strategy_for(name) for name in STRATEGIES}
    models: dict[tuple[str, str, str], Any] = {}
    data: dict[tuple[str, str, str], Any] = {}
    skipped: dict[tuple[str, str, str], str] = {}
    warmup: dict[tuple[str, str, str], float] = {}
    for case in cases.values():
        for strategy in STRATEGIES:
            for method in METHODS:
                key = (case.name, strategy, method)
                if case.name == "fraud" and method == "vectorized-no-xla":
                    skipped[key] = "not run in this process: it crashes it, see the probe below"
                    continue
                try:
                    model = compile_for(case, method, strategies[strategy])
                except DPConfigError as error:
                    skipped[key] = f"not applicable: {error}"
                    continue
                data[key] = case.dataset("memory")
                print(f"[warm-up] {key}", flush=True)
                start = time.perf_counter()
                model.fit(data[key], epochs=1, steps_per_epoch=2, verbose=0)  # trace, compile, fill the cache
                warmup[key] = time.perf_counter() - start
                models[key] = model

    seconds: dict[tuple[str, str, str], list[float]] = {key: [] for key in models}
    timer = EpochTimer()
    for round_index in range(rounds):
        print(f"[round {round_index + 1}/{rounds}]", flush=True)
        for key, model in models.items():
            model.fit(data[key], epochs=1, steps_per_epoch=steps_for(key[2], steps), callbacks=[timer], verbose=0)
            seconds[key].append(timer.seconds)

    rows = []
    for case in cases.values():
        for strategy in STRATEGIES:
            for method in METHODS:
                key = (case.name, strategy, method)
                row: dict[str, Any] = {"use_case": case.name, "strategy": strategy, "method": method,
                                       "replicas": strategies[strategy].num_replicas_in_sync,
                                       "batch_size": case.batch_size}
                if key in skipped:
                    rows.append({**row, "examples_per_sec": None, "epoch_time_vs_non_dp": None, "note": skipped[key]})
                    continue
                rate = steps_for(method, steps) * case.batch_size / statistics.median(seconds[key])
                base = steps * case.batch_size / statistics.median(seconds[case.name, strategy, "non-dp"])
                rows.append({**row, "examples_per_sec": round(rate, 1), "epoch_time_vs_non_dp": round(base / rate, 2),
                             "note": "", "warmup_seconds": round(warmup[key], 2),
                             "epoch_seconds": [round(s, 4) for s in seconds[key]]})
        for cache in ("memory", "off"):
            rows.append({"use_case": case.name, "strategy": "input only", "method": f"tf.data, cache: {cache}",
                         "replicas": 0, "batch_size": case.batch_size,
                         "examples_per_sec": round(input_rate(case.dataset(cache), case.batch_size, steps, rounds), 1),
                         "epoch_time_vs_non_dp": None, "note": ""})
    probes = {"fraud vectorized-no-xla": probe_crash(work, "fraud", "vectorized-no-xla")}
    return {"rows": rows, "probes": probes,
            "cases": {c.name: {"train_examples": c.train_examples, "parameters": c.parameters,
                               "batch_size": c.batch_size} for c in cases.values()}}


def input_rate(dataset: Any, batch_size: int, steps: int, rounds: int) -> float:
    iterator = iter(dataset)
    for _ in range(steps):  # warm-up (fills the memory cache once a pass is read)
        next(iterator)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        times.append(time.perf_counter() - start)
    return steps * batch_size / statistics.median(times)


# ---------------------------------------------------------------- report

def write_report(result: dict[str, Any], meta: dict[str, Any]) -> None:
    rows = result["rows"]
    (HERE / "results.json").write_text(json.dumps({"meta": meta, **result}, indent=1) + "\n")
    fields = ["use_case", "strategy", "method", "replicas", "batch_size", "examples_per_sec", "epoch_time_vs_non_dp",
              "note"]
    with open(HERE / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot(rows)

    lines = ["# Training throughput: both use cases, non-DP vs DP-SGD methods, mirrored on 1 vs 2 devices", "",
             f"Machine: {meta['machine']}; Python {meta['python']}, TensorFlow {meta['tensorflow']}; no GPU; "
             f"load average {meta['load_average_before']} before, {meta['load_average_after']} after (1/5/15 min). "
             f"Date: {meta['date']}. Command: `{meta['command']}` ({meta['steps']} steps per timed epoch, "
             f"{meta['rounds']} rounds round-robin, median; microbatch epochs are shorter, see the script). "
             f"DP-SGD: C = {DP_C}, z = {DP_Z}. Files: results.json (per-epoch seconds), results.csv, throughput.png.",
             ""]
    for name, facts in result["cases"].items():
        lines.append(f"* {name}: {facts['train_examples']} training examples (real Transform output), "
                     f"{facts['parameters']:,} parameters, batch {facts['batch_size']}.")
    for name in result["cases"]:
        notes: dict[str, int] = {}
        lines += ["", f"## {name}", "", "| strategy | method | examples/s | epoch time vs non-DP (same strategy) |",
                  "|---|---|---:|---:|"]
        for row in rows:
            if row["use_case"] != name:
                continue
            rate = f"{row['examples_per_sec']:,.0f}" if row["examples_per_sec"] is not None else "—"
            ratio = f"{row['epoch_time_vs_non_dp']:.2f}×" if row["epoch_time_vs_non_dp"] is not None else "—"
            if row["note"]:
                notes.setdefault(row["note"], len(notes) + 1)
            mark = f" [{notes[row['note']]}]" if row["note"] else ""
            lines.append(f"| {row['strategy']} | {row['method']}{mark} | {rate} | {ratio} |")
        if notes:
            lines += [""] + [f"[{number}] {note}" for note, number in notes.items()]
    lines += ["", "## Configurations run in a child process (they may crash it)", ""]
    for name, outcome in result["probes"].items():
        lines.append(f"* {name}: {'trains' if outcome['ok'] else 'crashed'} (exit code {outcome['returncode']}; "
                     f"last stderr line: `{outcome['stderr_tail']}`)")
    analysis = HERE / "analysis.md"
    if analysis.is_file():
        lines += ["", analysis.read_text().rstrip()]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n")


def plot(rows: list[dict[str, Any]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted({row["use_case"] for row in rows})
    figure, axes = plt.subplots(1, len(cases), figsize=(7 * len(cases), 4.5))
    for axis, case in zip(axes, cases, strict=True):
        trained = [r for r in rows if r["use_case"] == case and r["strategy"] != "input only"]
        width = 0.8 / len(STRATEGIES)
        for index, strategy in enumerate(STRATEGIES):
            values = [next((r["examples_per_sec"] or 0 for r in trained
                            if r["strategy"] == strategy and r["method"] == m), 0) for m in METHODS]
            axis.bar([i + index * width for i in range(len(METHODS))], values, width, label=strategy)
        for i, method in enumerate(METHODS):
            if all(not r["examples_per_sec"] for r in trained if r["method"] == method):
                label = "crashes" if "crash" in next(r["note"] for r in trained if r["method"] == method) else "n/a"
                axis.text(i + width, 0.02, label, ha="center", transform=axis.get_xaxis_transform(), color="dimgrey")
        axis.set_xticks([i + width for i in range(len(METHODS))], METHODS)
        axis.set_yscale("log")
        axis.set_ylabel("training examples/s (log)")
        axis.set_title(f"{case}: throughput by DP method and strategy")
        for r in rows:
            if r["use_case"] == case and r["strategy"] == "input only" and r["method"].endswith("memory"):
                axis.axhline(r["examples_per_sec"], color="grey", linestyle="--", label="input pipeline alone (cached)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(HERE / "throughput.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--work", type=Path, default=None, help="where data and Transform outputs go (reused)")
    parser.add_argument("--fraud-transactions", type=int, default=30_000)
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", nargs=2, metavar=("USE_CASE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite RESULTS.md, results.csv and the plot from results.json "
                             "(e.g. after editing analysis.md)")
    args = parser.parse_args()
    if args.report_only:
        recorded = json.loads((HERE / "results.json").read_text())
        write_report({key: recorded[key] for key in ("rows", "probes", "cases")}, recorded["meta"])
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="esteira-bench-training-"))
    if args.prepare_only:
        prepare(work, args.fraud_transactions)
        return
    if args.probe:
        probe(work, *args.probe)
        return
    # The pipeline runs in a child process: this one declares 2 logical CPUs before TF starts.
    subprocess.run([sys.executable, __file__, "--work", str(work), "--prepare-only",
                    "--fraud-transactions", str(args.fraud_transactions)], check=True)
    from models.common.strategy import configure_logical_cpus
    configure_logical_cpus(2)
    import tensorflow as tf

    before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    result = run(work, args.steps, args.rounds)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python benchmarks/training/bench_training.py",
                             *(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                               if k in ("steps", "rounds", "fraud_transactions"))]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "load_average_before": before, "load_average_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "steps": args.steps, "rounds": args.rounds, "work": str(work),
    }
    write_report(result, meta)
    print((HERE / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
