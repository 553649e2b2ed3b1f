"""Esteira's fraud model on the handbook's prequential folds, written in compare.py's predictions format.

Per fold (the folds of prequential.py: fold 0 evaluates 2018-08-08..08-14, each next fold 7 days
earlier), one of two paths trains the same model code (models/fraud/model.py) with the
hyper-parameters of configs/fraud_handbook.yaml:

- ``--path pipeline`` (default): `esteira run --config configs/fraud_handbook.yaml --to Trainer` with
  ``data.split.end_span`` set to the fold's last eval day and scratch roots, so the anonymizing
  ExampleGen computes the window features, the card histories and the time split (known-compromised
  cards removed), Transform scales them and the Trainer trains; then the trained SavedModel's
  ``serving_default`` signature scores the ExampleGen's eval split (serialized tf.Examples, the
  transaction_id travels with each row).
- ``--path research``: the same inputs built in numpy (benchmarks/fraud/handbook/model/research.py)
  and the same build_model / loss / steps, minutes faster; for quick iterations.

    nice -n 10 .venv/bin/python benchmarks/fraud/handbook/esteira_prequential.py \\
        --data /tmp/handbook-data/seed-1 --out benchmarks/fraud/handbook/results/prequential/predictions/esteira.parquet

Then `compare.py --folds .../folds.parquet --predictions .../predictions/*.parquet --reference esteira`
gives mean ± std over the folds and the card-bootstrap interval of each difference.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent / "model"))

CONFIG = REPO / "configs" / "fraud_handbook.yaml"
TEST_END_DAYS = (135, 128, 121, 114)  # prequential.py's test folds, fold 0 first


def pipeline_fold(fold: int, end_day: int, data: Path, scratch: Path, extra: list[str]) -> tuple[pd.DataFrame, dict]:
    """Run the pipeline up to the Trainer for one fold and score its eval split with the trained model."""
    import tensorflow as tf

    root = scratch / f"fold-{fold}"
    overrides = [f"data.source={data}", f"data.split.end_span={end_day + 1}",  # span 1 is day 0
                 f"pipeline.root={root / 'pipeline'}", f"pipeline.metadata_path={root / 'metadata.db'}",
                 f"serving.base_path={root / 'serving'}", "pipeline.enable_cache=false", *extra]
    command = [str(REPO / ".venv" / "bin" / "esteira"), "run", "--config", str(CONFIG), "--to", "Trainer"]
    for item in overrides:
        command += ["--set", item]
    env = {**os.environ, "ESTEIRA_PSEUDONYM_KEY": os.environ.get("ESTEIRA_PSEUDONYM_KEY", secrets.token_hex(32))}
    started = time.perf_counter()
    log = root / "run.log"
    root.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        code = subprocess.call(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    run_seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"fold {fold}: esteira run failed (exit {code}); see {log}")
    trainer_seconds = _fit_seconds(log)
    models = sorted(glob.glob(str(root / "pipeline" / "**" / "Format-Serving"), recursive=True))
    evals = sorted(glob.glob(str(root / "pipeline" / "AnonymizingExampleGen" / "examples" / "*" / "Split-eval" / "*")))
    if not models or not evals:
        raise SystemExit(f"fold {fold}: no trained model ({models}) or eval split ({evals}) under {root}")
    model = tf.saved_model.load(models[-1])
    serve = model.signatures["serving_default"]
    ids, scores = [], []
    batch: list[bytes] = []

    def flush() -> None:
        scores.append(serve(examples=tf.constant(batch))["probability"].numpy().reshape(-1))
        batch.clear()

    for record in tf.data.TFRecordDataset(evals, compression_type="GZIP").as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        ids.append(example.features.feature["transaction_id"].int64_list.value[0])
        batch.append(record)
        if len(batch) == 4096:
            flush()
    if batch:
        flush()
    frame = pd.DataFrame({"fold": fold, "transaction_id": np.asarray(ids, np.int64), "score": np.concatenate(scores)})
    return frame, {"pipeline_seconds": round(run_seconds, 1), "trainer_seconds": trainer_seconds,
                   "model": models[-1], "eval_rows": len(frame)}


def _fit_seconds(log: Path) -> float | None:
    """Seconds Keras spent in fit, summed over its epoch lines ('263/263 - 12s - loss: ...') in the run log."""
    found = [float(m) for m in re.findall(r"^\s*\d+/\d+ - (\d+(?:\.\d+)?)s ", log.read_text(), re.MULTILINE)]
    return sum(found) if found else None


def research_fold(fold: int, end_day: int, data: Path) -> tuple[pd.DataFrame, dict]:
    """The research path: the same model code and hyper-parameters on numpy-built inputs."""
    from models.fraud.time_split import TimeSplit

    import research

    arrays = research.load(data, Path("/tmp/handbook-model-cache") / f"{data.name}.npz")
    experiment = research.experiment_from_config(yaml.safe_load(CONFIG.read_text()))
    split = TimeSplit(train_days=7, delay_days=research.DELAY_DAYS, eval_days=7, end_day=end_day)
    result = research.train_and_score(arrays, split, experiment)
    frame = pd.DataFrame({"fold": fold, "transaction_id": arrays["transaction_id"][result.pop("rows")],
                          "score": result.pop("scores")})
    return frame, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/handbook-data/seed-1"))
    parser.add_argument("--out", type=Path, required=True, help="predictions parquet (fold, transaction_id, score)")
    parser.add_argument("--path", choices=["pipeline", "research"], default="pipeline")
    parser.add_argument("--folds", default="0,1,2,3", help="comma-separated fold numbers (0 = latest)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/esteira-prequential"))
    parser.add_argument("--set", action="append", default=[], help="extra esteira --set overrides (pipeline path)")
    args = parser.parse_args()
    frames, facts = [], []
    for fold in (int(f) for f in args.folds.split(",")):
        end_day = TEST_END_DAYS[fold]
        if args.path == "pipeline":
            frame, fact = pipeline_fold(fold, end_day, args.data.resolve(), args.scratch, args.set)
        else:
            frame, fact = research_fold(fold, end_day, args.data)
        fact = {"fold": fold, "end_day": end_day, "path": args.path, **fact}
        print(json.dumps(fact), flush=True)
        frames.append(frame)
        facts.append(fact)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames, ignore_index=True).to_parquet(args.out, index=False)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
         "machine": f"{os.uname().nodename} {os.cpu_count()} cores", "folds": facts}, indent=1, default=str))


if __name__ == "__main__":
    main()
