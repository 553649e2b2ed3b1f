"""Fast research loop for Esteira's fraud model on the handbook data, outside TFX, same model code.

Per prequential fold it builds the inputs the pipeline feeds the Trainer: the book's window features
(models/fraud/window_features.py), the card history as the AnonymizingExampleGen writes it (the
card's last N strictly earlier transactions, most recent first, padded), scaled as
models/fraud/preprocessing.py scales them (statistics of the train window only), then trains
`models.fraud.model.build_model` and scores the eval window (known-compromised cards removed,
models/fraud/time_split.py) with models/fraud/metrics.py. Minutes per experiment instead of a
pipeline run per fold; the pipeline path is benchmarks/fraud/handbook/esteira_prequential.py.

    nice -n 10 .venv/bin/python benchmarks/fraud/handbook/model/research.py \\
        --data /tmp/handbook-data/seed-1 --folds validation --set length=10 --set epochs=8
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))

from models.fraud.metrics import average_precision, card_precision_at_k  # noqa: E402
from models.fraud.time_split import TimeSplit, known_compromised  # noqa: E402
from models.fraud.window_features import WINDOW_FEATURE_NAMES  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import data as handbook_data  # noqa: E402  (benchmarks/fraud/handbook/data.py)

MAX_LENGTH = 30
DELAY_DAYS = 7
# The prequential folds of benchmarks/fraud/handbook/prequential.py (fold 0 first, the latest): 7 days
# train, 7 delay, 7 eval; test fold 0 evaluates 2018-08-08..08-14 (day 135); validation fold f ends 14
# days before test fold f and is where hyper-parameters are chosen.
TEST_END_DAYS = (135, 128, 121, 114)
VALIDATION_END_DAYS = (121, 114, 107, 100)


def load(root: Path, cache: Path) -> dict[str, np.ndarray]:
    """All transactions with the book's features (benchmarks/fraud/handbook/data.py, the baselines'
    own) and card-history indices, as arrays in time order; computed once and cached."""
    if cache.exists():
        with np.load(cache) as stored:
            return dict(stored)
    frame = handbook_data.load(root).frame  # sorted by (timestamp, transaction_id): transaction order
    times = frame["timestamp"].to_numpy(np.int64)
    tids = frame["transaction_id"].to_numpy(np.int64)
    cards = pd.factorize(frame["card_number"])[0].astype(np.int64)
    data: dict[str, np.ndarray] = {
        "card": cards, "time": times, "transaction_id": tids, "amount": frame["amount"].to_numpy(np.float64),
        "label": frame["is_fraud"].to_numpy(np.int64), "terminal": frame["terminal_id"].to_numpy(np.int64),
        "scenario": frame["fraud_scenario"].to_numpy(np.int64),  # diagnostics only
        "day": frame["day"].to_numpy(np.int64)}
    data.update({name: frame[name].to_numpy() for name in WINDOW_FEATURE_NAMES})
    source, valid = card_history_index(cards, times, tids, MAX_LENGTH)
    data.update(history_source=source, history_valid=valid)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def card_history_index(cards: np.ndarray, times: np.ndarray, tids: np.ndarray,
                       length: int) -> tuple[np.ndarray, np.ndarray]:
    """Row index of each transaction's k-th most recent strictly earlier transaction of its card.

    As components/anonymizing_example_gen/sequence_features.py: rows at the same second never see
    each other. Returns (source [n, length] int64, valid [n, length] bool) in input order.
    """
    order = np.lexsort((tids, times, cards))
    c, t = cards[order], times[order]
    n = order.size
    position = np.arange(n)
    new_card = np.r_[True, c[1:] != c[:-1]]
    new_second = new_card | np.r_[True, t[1:] != t[:-1]]
    card_first = np.maximum.accumulate(np.where(new_card, position, 0))
    second_first = np.maximum.accumulate(np.where(new_second, position, 0))
    lag = second_first[:, None] - np.arange(1, length + 1)[None, :]
    valid_sorted = lag >= card_first[:, None]
    source_sorted = order[np.where(valid_sorted, lag, 0)]
    source = np.empty((n, length), np.int64)
    valid = np.empty((n, length), bool)
    source[order], valid[order] = source_sorted, valid_sorted
    return source, valid


@dataclass
class Experiment:
    """Hyper-parameters of one research run (``--set key=value``)."""

    length: int = 10
    history_lookback_days: int = 37  # the ExampleGen reads the window features' 37 days of context
    use_time: bool = False
    log_features: list[str] = field(default_factory=lambda: [
        "amount", "customer_avg_amount_1d", "customer_avg_amount_7d", "customer_avg_amount_30d",
        "customer_nb_tx_1d", "customer_nb_tx_7d", "customer_nb_tx_30d",
        "terminal_nb_tx_1d", "terminal_nb_tx_7d", "terminal_nb_tx_30d"])
    hidden_units: list[int] = field(default_factory=lambda: [64, 32])
    dropout: float = 0.2
    learning_rate: float = 1e-3
    batch_size: int = 256
    epochs: int = 8
    steps_per_epoch: int | None = None  # None: one pass over the train window per epoch
    seeds: int = 1
    options: dict[str, Any] = field(default_factory=lambda: {
        "loss": "weighted_bce", "positive_weight": 1.0, "relative_history": True,
        "conv_filters": 32, "lstm_units": 32, "attention_units": 32, "fusion_units": 32})

    def custom_config(self, seed: int) -> dict[str, Any]:
        """custom_config as pipeline/dag.py would send it for configs/fraud_handbook.yaml."""
        features = {"amount": "float", **{name: ("int" if name.startswith("during_") else "float")
                                          for name in WINDOW_FEATURE_NAMES}}
        if self.use_time:
            features["timestamp"] = "int"
        history = {"history_amount": "float", "history_seconds_since": "float", "history_mask": "int",
                   "history_count": "int"}
        options = {**self.options, "log_features": self.log_features,
                   "time_feature": "timestamp" if self.use_time else None}
        return {"data": {"label": "is_fraud", "features": features},
                "sequence": {"length": self.length, "prefix": "history_", "features": history},
                "model": {"hidden_units": self.hidden_units, "dropout": self.dropout,
                          "learning_rate": self.learning_rate, "batch_size": self.batch_size, "options": options},
                "training": {"epochs": self.epochs, "seed": seed}}


def experiment_from_config(config: dict[str, Any]) -> Experiment:
    """The Experiment a configs/fraud_handbook.yaml describes (its model, training and history sections)."""
    model, training = config["model"], config["training"]
    options = dict(model.get("options", {}))
    log_features = options.pop("log_features", Experiment().log_features)
    time_feature = options.pop("time_feature", "timestamp")
    return Experiment(
        length=config["sequence_features"]["length"], use_time=time_feature is not None and
        time_feature in config["data"]["features"], log_features=log_features,
        hidden_units=model["hidden_units"], dropout=model["dropout"], learning_rate=model["learning_rate"],
        batch_size=model["batch_size"], epochs=training["epochs"],
        steps_per_epoch=training["train_steps"] // training["epochs"], options=options)


def fold_rows(data: dict[str, np.ndarray], split: TimeSplit) -> tuple[np.ndarray, np.ndarray]:
    """Train rows, and eval rows without the cards already known compromised."""
    day = data["day"]
    in_split = (day >= split.first_day) & (day <= split.end_day)
    train_first, train_last = split.train_range
    eval_first, eval_last = split.eval_range
    train = np.flatnonzero((day >= train_first) & (day <= train_last))
    rows = np.flatnonzero(in_split)
    known = known_compromised(day[rows], data["card"][rows], data["label"][rows], split)
    eval_rows = rows[(day[rows] >= eval_first) & (day[rows] <= eval_last) & ~known]
    return train, eval_rows


def raw_features(data: dict[str, np.ndarray], rows: np.ndarray, experiment: Experiment,
                 first_day: int) -> dict[str, np.ndarray]:
    """The raw columns of `rows` as the ExampleGen emits them: current features and the card history."""
    length = experiment.length
    raw = {name: data[name][rows].astype(np.float64) for name in ["amount", *WINDOW_FEATURE_NAMES]}
    raw["timestamp"] = data["time"][rows]
    source = data["history_source"][rows, :length]
    valid = data["history_valid"][rows, :length]
    # the ExampleGen reads `lookback` earlier spans as history context, no more
    valid = valid & (data["day"][source] >= first_day - experiment.history_lookback_days)
    raw["history_mask"] = valid.astype(np.int64)
    raw["history_count"] = valid.sum(axis=1)
    raw["history_amount"] = np.where(valid, data["amount"][source], 0.0)
    raw["history_seconds_since"] = np.where(valid, (data["time"][rows, None] - data["time"][source]), 0.0)
    return raw


def fit_and_transform(train: dict[str, np.ndarray], evaluation: dict[str, np.ndarray],
                      settings: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """preprocessing_fn's arithmetic in numpy: statistics from the train window, applied to both."""
    from models.fraud.features import transformed_name as xf
    from models.fraud.preprocessing import EPOCH_WEEKDAY

    def numeric(values: np.ndarray, name: str) -> np.ndarray:
        values = values.astype(np.float64)
        return np.log1p(np.maximum(values, 0.0)) if settings.is_log_scaled(name) else values

    def z(values: np.ndarray, mean: float, var: float) -> np.ndarray:
        return (values - mean) / np.sqrt(var) if var > 0 else np.zeros_like(values)

    sequence, length = settings.sequence, settings.sequence.length
    outs: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
    moments = {}
    for name in settings.numeric_features:
        fitted = numeric(train[name], name)
        moments[name] = (fitted.mean(), fitted.var())
        for raw, out in zip((train, evaluation), outs, strict=True):
            out[xf(name)] = z(numeric(raw[name], name), *moments[name]).astype(np.float32)
    real = train[sequence.mask].astype(bool)
    seconds = np.log1p(train[sequence.seconds_since].astype(np.float64))
    seconds_moments = (seconds[real].mean(), seconds[real].var())
    for raw, out in zip((train, evaluation), outs, strict=True):
        mask = raw[sequence.mask].astype(np.float32)
        out[xf(sequence.mask)] = mask
        out[xf(sequence.count)] = (raw[sequence.count] / float(length)).astype(np.float32)
        out[xf(sequence.seconds_since)] = (z(np.log1p(raw[sequence.seconds_since].astype(np.float64)),
                                             *seconds_moments) * mask).astype(np.float32)
        for name in sequence.value_features:
            base = sequence.base_name(name)
            out[xf(name)] = (z(numeric(raw[name], base), *moments[base]) * mask).astype(np.float32)
        if settings.uses_time:
            seconds_of = raw[settings.model.options.time_feature].astype(np.int64)
            out[xf("hour_of_day")] = (seconds_of // 3600) % 24
            out[xf("day_of_week")] = (seconds_of // 86_400 + EPOCH_WEEKDAY) % 7
    return outs


def to_inputs(transformed: dict[str, np.ndarray], settings: Any) -> dict[str, np.ndarray]:
    from models.fraud.model import current_inputs, sequence_inputs
    length = settings.sequence.length
    result = {name: transformed[name].reshape(-1, 1) for name in current_inputs(settings)}
    result.update({name: transformed[name].reshape(-1, length) for name in sequence_inputs(settings)})
    return result


def train_and_score(data: dict[str, np.ndarray], split: TimeSplit, experiment: Experiment) -> dict[str, Any]:
    import tensorflow as tf
    from sklearn.metrics import roc_auc_score

    from models.fraud.features import FraudSettings
    from models.fraud.model import build_model, class_weight, make_loss, served_probability

    train_rows, eval_rows = fold_rows(data, split)
    settings = FraudSettings.from_custom_config(experiment.custom_config(0))
    train_raw = raw_features(data, train_rows, experiment, split.first_day)
    eval_raw = raw_features(data, eval_rows, experiment, split.first_day)
    train_xf, eval_xf = fit_and_transform(train_raw, eval_raw, settings)
    x_train, x_eval = to_inputs(train_xf, settings), to_inputs(eval_xf, settings)
    y_train = data["label"][train_rows].astype(np.float32).reshape(-1, 1)
    y_eval = data["label"][eval_rows]
    started = time.perf_counter()
    scores = np.zeros(eval_rows.size)
    for seed in range(experiment.seeds):
        settings = FraudSettings.from_custom_config(experiment.custom_config(seed))
        tf.keras.utils.set_random_seed(1000 + seed)
        model = build_model(settings, {})
        model.compile(tf.keras.optimizers.Adam(experiment.learning_rate), loss=make_loss(settings))
        dataset = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                   .shuffle(len(y_train), seed=seed, reshuffle_each_iteration=True)
                   .batch(experiment.batch_size, drop_remainder=True))
        if experiment.steps_per_epoch:
            dataset = dataset.repeat()
        model.fit(dataset.prefetch(2), epochs=experiment.epochs, steps_per_epoch=experiment.steps_per_epoch,
                  verbose=0, class_weight=class_weight(settings))
        output = model.predict(x_eval, batch_size=4096, verbose=0)
        scores += served_probability(output).numpy().reshape(-1) / experiment.seeds
    seconds = time.perf_counter() - started
    days, cards = data["day"][eval_rows], data["card"][eval_rows]
    cp, _ = card_precision_at_k(days, cards, y_eval, scores, k=100)
    return {"end_day": split.end_day, "train_rows": int(train_rows.size), "train_frauds": int(y_train.sum()),
            "eval_rows": int(eval_rows.size), "eval_frauds": int(y_eval.sum()),
            "auc": float(roc_auc_score(y_eval, scores)), "ap": float(average_precision(y_eval, scores)),
            "cp100": float(cp), "train_seconds": round(seconds, 1), "scores": scores, "rows": eval_rows}


def baseline_xgboost(data: dict[str, np.ndarray], split: TimeSplit, **params: Any) -> dict[str, Any]:
    """Default-parameter XGBoost on the 15 features of the same fold: a quick yardstick only (the tuned
    baselines are benchmarks/fraud/handbook/'s)."""
    import xgboost
    from sklearn.metrics import roc_auc_score
    train_rows, eval_rows = fold_rows(data, split)
    names = ["amount", *WINDOW_FEATURE_NAMES]
    x = np.column_stack([data[name] for name in names])
    model = xgboost.XGBClassifier(n_jobs=2, random_state=0, **params)
    model.fit(x[train_rows], data["label"][train_rows])
    scores = model.predict_proba(x[eval_rows])[:, 1]
    y_eval = data["label"][eval_rows]
    cp, _ = card_precision_at_k(data["day"][eval_rows], data["card"][eval_rows], y_eval, scores, k=100)
    return {"end_day": split.end_day, "auc": float(roc_auc_score(y_eval, scores)),
            "ap": float(average_precision(y_eval, scores)), "cp100": float(cp)}


def parse_set(pairs: list[str], experiment: Experiment) -> Experiment:
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:  # a bare word: a string
            parsed = value
        if key.startswith("options."):
            experiment.options[key.split(".", 1)[1]] = parsed
        elif hasattr(experiment, key):
            setattr(experiment, key, parsed)
        else:
            raise SystemExit(f"--set {key}: unknown; keys: {list(Experiment.__dataclass_fields__)} or options.<name>")
    return experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/handbook-data/seed-1"))
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--folds", choices=["validation", "test"], default="validation")
    parser.add_argument("--only", type=int, default=None, help="run only the first N folds")
    parser.add_argument("--model", choices=["esteira", "xgboost"], default="esteira")
    parser.add_argument("--set", action="append", default=[], help="key=value (JSON values)")
    parser.add_argument("--label", default="")
    parser.add_argument("--log", type=Path, default=Path(__file__).with_name("experiments.jsonl"))
    parser.add_argument("--predictions-out", type=Path, default=None,
                        help="parquet of fold, transaction_id, score (benchmarks/fraud/handbook/compare.py's format)")
    args = parser.parse_args()
    cache = args.cache or Path("/tmp/handbook-model-cache") / f"{args.data.name}.npz"
    started = time.perf_counter()
    data = load(args.data, cache)
    print(f"data: {data['label'].size} transactions, {data['label'].mean():.4%} fraud "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    experiment = parse_set(args.set, Experiment())
    ends = TEST_END_DAYS if args.folds == "test" else VALIDATION_END_DAYS
    ends = ends[: args.only] if args.only else ends
    results, saved = [], []
    for fold, end in enumerate(ends):
        split = TimeSplit(train_days=7, delay_days=DELAY_DAYS, eval_days=7, end_day=end)
        result = (train_and_score(data, split, experiment) if args.model == "esteira"
                  else baseline_xgboost(data, split))
        if "scores" in result:
            rows, scores = result.pop("rows"), result.pop("scores")
            saved.append(pd.DataFrame({"fold": fold, "transaction_id": data["transaction_id"][rows], "score": scores}))
        results.append(result)
        print(json.dumps(result), flush=True)
    mean = {key: float(np.mean([r[key] for r in results])) for key in ("auc", "ap", "cp100")}
    std = {key: float(np.std([r[key] for r in results])) for key in ("auc", "ap", "cp100")}
    print(f"MEAN {args.model} {args.folds}: AUC {mean['auc']:.4f} AP {mean['ap']:.4f}±{std['ap']:.4f} "
          f"CP@100 {mean['cp100']:.4f}±{std['cp100']:.4f}", flush=True)
    record = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "label": args.label, "model": args.model,
              "folds": args.folds, "data": str(args.data), "set": args.set,
              "experiment": experiment.__dict__ if args.model == "esteira" else {}, "mean": mean, "std": std,
              "per_fold": results}
    with args.log.open("a") as log:
        log.write(json.dumps(record) + "\n")
    if args.predictions_out and saved:
        args.predictions_out.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(saved, ignore_index=True).to_parquet(args.predictions_out, index=False)


if __name__ == "__main__":
    main()
