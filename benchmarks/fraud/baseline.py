"""The pushed fraud model versus a logistic-regression baseline, on the same split of the same run.

Both read the ExampleGen's anonymized tf.Examples that the pushed model's lineage (MLMD) names:
the baseline is fitted on the train split with the current transaction's columns only (the
Trainer's `features`, with the same derived hour of day and day of week, log1p of the same heavy-
tailed columns, one-hot strings), the fraud model is the pushed SavedModel called through
`serving_default` exactly as the Evaluator calls it. Both are scored on the eval split with the
same metric code: AUC, AUC-PR (average precision) with a bootstrap interval for the difference,
and recall at a 1 % false-positive rate. Writes JSON + Markdown (machine, date, command) and a PR plot.

    .venv/bin/python benchmarks/fraud/baseline.py --pipeline-root outputs/fraud/pipeline \
        --metadata outputs/fraud/metadata.db --out benchmarks/fraud/results
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

TARGET_FPR = 0.01
BOOTSTRAP_ROUNDS = 1000
PREDICT_BATCH = 2048


class BenchmarkError(RuntimeError):
    """The pipeline root or metadata store does not hold what the benchmark needs."""


@dataclass(frozen=True)
class RunInputs:
    """What one pushed model was trained and evaluated with, traced through MLMD."""

    model_dir: Path
    pushed_version: str
    train_files: list[Path]
    eval_files: list[Path]
    custom_config: dict[str, Any]


def find_run(pipeline_root: Path, metadata: Path) -> RunInputs:
    """The latest pushed model, its Examples artifact (train/eval splits) and its Trainer's custom_config."""
    from evidence.lineage import open_store, producer, pushed_models, trace_pushed_model

    store = open_store(metadata)
    pushed = pushed_models(store)
    if not pushed:
        raise BenchmarkError(f"{metadata} records no pushed model; run the pipeline until a model is blessed")
    lineage = trace_pushed_model(store, pushed[-1])
    model_dir = Path(lineage.model.uri) / "Format-Serving"
    examples = Path(lineage.examples.uri)
    for path in (model_dir, examples):
        if pipeline_root.resolve() not in path.resolve().parents:
            raise BenchmarkError(f"{path} (from {metadata}) is not under --pipeline-root {pipeline_root}; "
                                 "pass the metadata database of that pipeline root")
        if not path.exists():
            raise BenchmarkError(f"{path} is recorded in {metadata} but missing on disk")
    [trainer] = store.get_executions_by_id([producer(store, lineage.model.id)])
    custom_config = json.loads(trainer.custom_properties["custom_config"].string_value)
    splits = {name: sorted((examples / f"Split-{name}").glob("*.gz")) for name in ("train", "eval")}
    for name, files in splits.items():
        if not files:
            raise BenchmarkError(f"no tf.Example files in {examples / f'Split-{name}'}")
    return RunInputs(model_dir, lineage.pushed_model.custom_properties["pushed_version"].string_value,
                     splits["train"], splits["eval"], custom_config)


def read_split(files: list[Path], features: dict[str, str], label: str) -> tuple[list[bytes], dict[str, np.ndarray]]:
    """Serialized examples (for the SavedModel) and the current columns plus label (for the baseline)."""
    import tensorflow as tf

    dtype = {"float": tf.float32, "int": tf.int64, "string": tf.string}
    default = {"float": 0.0, "int": 0, "string": ""}
    spec = {name: tf.io.FixedLenFeature([], dtype[kind], default_value=default[kind])
            for name, kind in features.items()}
    spec[label] = tf.io.FixedLenFeature([], tf.int64)
    serialized: list[bytes] = []
    columns: dict[str, list[np.ndarray]] = {name: [] for name in spec}
    for batch in tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP").batch(PREDICT_BATCH):
        serialized.extend(batch.numpy().tolist())
        for name, value in tf.io.parse_example(batch, spec).items():
            columns[name].append(value.numpy())
    return serialized, {name: np.concatenate(parts) for name, parts in columns.items()}


def baseline_design(columns: dict[str, np.ndarray], config: dict[str, Any]) -> dict[str, np.ndarray]:
    """The current transaction as the fraud model's preprocessing sees it, in a form LR can use."""
    from models.fraud.features import FraudSettings
    from models.fraud.preprocessing import EPOCH_WEEKDAY, SECONDS_PER_DAY, SECONDS_PER_HOUR

    settings = FraudSettings.from_custom_config(config)
    design: dict[str, np.ndarray] = {}
    for name in settings.numeric_features:
        value = columns[name].astype("float64")
        design[name] = np.log1p(np.maximum(value, 0.0)) if settings.is_log_scaled(name) else value
    for name in settings.categorical_features:
        design[name] = columns[name].astype(str)
    if settings.uses_time:
        seconds = columns[settings.model.options.time_feature].astype("int64")
        design["hour_of_day"] = ((seconds // SECONDS_PER_HOUR) % 24).astype(str)
        design["day_of_week"] = ((seconds // SECONDS_PER_DAY + EPOCH_WEEKDAY) % 7).astype(str)
    return design


def fit_baseline(train: dict[str, np.ndarray], labels: np.ndarray, seed: int) -> Any:
    """Standardized numbers + one-hot strings -> logistic regression, C chosen by 3-fold CV on train (AP)."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame(train)
    numeric = [c for c in frame.columns if frame[c].dtype.kind == "f"]
    categorical = [c for c in frame.columns if c not in numeric]
    model = make_pipeline(
        ColumnTransformer([("numbers", StandardScaler(), numeric),
                           ("strings", OneHotEncoder(handle_unknown="ignore"), categorical)]),
        LogisticRegressionCV(Cs=[0.01, 0.1, 1.0, 10.0, 100.0], cv=3, scoring="average_precision",
                             max_iter=2000, random_state=seed))
    model.fit(frame, labels)
    return model


def model_scores(model_dir: Path, serialized: list[bytes]) -> np.ndarray:
    """The pushed model's probabilities through serving_default (what the Evaluator calls)."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    parts = [serve(examples=tf.constant(serialized[i:i + PREDICT_BATCH]))["probability"].numpy().reshape(-1)
             for i in range(0, len(serialized), PREDICT_BATCH)]
    return np.concatenate(parts)


def metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return {"auc": float(roc_auc_score(labels, scores)),
            "auc_pr": float(average_precision_score(labels, scores)),
            "recall_at_1pct_fpr": float(tpr[fpr <= TARGET_FPR].max())}


def bootstrap_difference(labels: np.ndarray, a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, float]:
    """95 % interval of AUC-PR(a) - AUC-PR(b) over eval rows resampled with replacement."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(BOOTSTRAP_ROUNDS):
        index = rng.integers(0, len(labels), len(labels))
        if labels[index].sum() == 0:
            continue
        differences.append(average_precision_score(labels[index], a[index])
                           - average_precision_score(labels[index], b[index]))
    low, high = np.percentile(differences, [2.5, 97.5])
    return {"low": float(low), "high": float(high), "share_above_zero": float(np.mean(np.array(differences) > 0))}


def plot(labels: np.ndarray, curves: dict[str, np.ndarray], results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    figure, axis = plt.subplots(figsize=(6.4, 4.8))
    for name, scores in curves.items():
        precision, recall, _ = precision_recall_curve(labels, scores)
        axis.step(recall, precision, where="post", label=f"{name} (AUC-PR {results[name]['auc_pr']:.3f})")
    axis.axhline(labels.mean(), color="grey", linestyle=":", label=f"fraud rate {labels.mean():.3%}")
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.02),
             title=f"Fraud eval split: {len(labels)} transactions, {int(labels.sum())} frauds")
    axis.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": os.cpu_count(), "git_commit": commit}


def markdown(report: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {name} | {r['auc']:.4f} | {r['auc_pr']:.4f} | {r['recall_at_1pct_fpr']:.4f} |"
        for name, r in report["results"].items())
    diff, data, m = report["auc_pr_difference_95ci"], report["data"], report["machine"]
    verdict = "beats" if report["model_beats_baseline_on_auc_pr"] else "does NOT beat"
    return f"""# Fraud model vs logistic-regression baseline

The pushed fraud model {verdict} the baseline on AUC-PR on the eval split of the same run.

| model | AUC | AUC-PR (average precision) | recall at 1 % FPR |
|---|---|---|---|
{rows}

AUC-PR difference (model - baseline), 95 % bootstrap interval over eval rows ({BOOTSTRAP_ROUNDS} rounds):
[{diff['low']:+.4f}, {diff['high']:+.4f}]; the model is ahead in {diff['share_above_zero']:.1%} of resamples.

- Data: eval split {data['eval_examples']} transactions ({data['eval_frauds']} frauds); baseline trained on
  the train split, {data['train_examples']} transactions ({data['train_frauds']} frauds); pushed model version
  {data['pushed_version']} (`{data['model_dir']}`).
- Baseline: logistic regression on the current transaction only ({', '.join(report['baseline']['columns'])}),
  standardized numbers (log1p as the model's preprocessing), one-hot strings; C = {report['baseline']['C']:g}
  chosen among {report['baseline']['Cs']} by 3-fold CV on the train split (average precision).
- Fraud model: the SavedModel's `serving_default` on the raw serialized examples, as the Evaluator calls it.
- Metrics: scikit-learn on the same rows for both (the Evaluator's TFMA AUC-PR interpolates over
  thresholds, so it can differ slightly from average precision). Recall at 1 % FPR is the highest
  true-positive rate on the ROC curve with FPR <= 0.01.
- Machine: {m['cpu']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; commit {m['git_commit']}.
- Date: {report['date']}; wall time {report['seconds']:.0f} s.
- Command: `{report['command']}`

![precision-recall curves]({Path(report['plot']).name})
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline-root", type=Path, required=True, help="the fraud pipeline's root")
    parser.add_argument("--metadata", type=Path, help="its MLMD sqlite file (default: ROOT/../metadata.db)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "fraud" / "results",
                        help="directory for baseline.json, BASELINE.md and pr_curve.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.monotonic()
    metadata = args.metadata or args.pipeline_root.parent / "metadata.db"
    run = find_run(args.pipeline_root, metadata)
    config = run.custom_config
    from models.fraud.features import FraudSettings

    data = FraudSettings.from_custom_config(config).data
    features, label = dict(data.features), data.label

    _, train_columns = read_split(run.train_files, features, label)
    eval_serialized, eval_columns = read_split(run.eval_files, features, label)
    train_labels, eval_labels = train_columns[label], eval_columns[label]
    if eval_labels.sum() == 0 or train_labels.sum() == 0:
        raise BenchmarkError("a split has no frauds; simulate more transactions")

    baseline = fit_baseline(baseline_design(train_columns, config), train_labels, args.seed)
    import pandas as pd
    baseline_scores = baseline.predict_proba(pd.DataFrame(baseline_design(eval_columns, config)))[:, 1]
    fraud_scores = model_scores(run.model_dir, eval_serialized)

    results = {"fraud model (Conv1D+LSTM, history)": metrics(eval_labels, fraud_scores),
               "logistic regression (current transaction)": metrics(eval_labels, baseline_scores)}
    model_name, baseline_name = list(results)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_path = args.out / "pr_curve.png"
    plot(eval_labels, {model_name: fraud_scores, baseline_name: baseline_scores}, results, plot_path)
    regression = baseline[-1]
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "data": {"train_examples": len(train_labels), "train_frauds": int(train_labels.sum()),
                 "eval_examples": len(eval_labels), "eval_frauds": int(eval_labels.sum()),
                 "pushed_version": run.pushed_version, "model_dir": str(run.model_dir)},
        "baseline": {"columns": list(baseline_design(eval_columns, config)), "C": float(regression.C_[0]),
                     "Cs": [float(c) for c in regression.Cs_]},
        "results": results,
        "auc_pr_difference_95ci": bootstrap_difference(eval_labels, fraud_scores, baseline_scores, args.seed),
        "model_beats_baseline_on_auc_pr": results[model_name]["auc_pr"] > results[baseline_name]["auc_pr"],
        "plot": str(plot_path),
        "seconds": time.monotonic() - started,
    }
    (args.out / "baseline.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "BASELINE.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
