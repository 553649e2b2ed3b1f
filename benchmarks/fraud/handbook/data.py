"""The handbook benchmark's data: generate a seed with `esteira data fraud --profile handbook`, load its
raw CSVs, compute the book's 15 features with models/fraud/window_features, and cut the book's
out-of-time splits with models/fraud/time_split.

The features are computed over the whole 183 days per card and per terminal (as the book does), then
split; the terminal windows end 7 days before each transaction, so no label inside the delay is used.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from models.fraud.time_split import TimeSplit, day_index, known_compromised  # noqa: E402
from models.fraud.window_features import (  # noqa: E402
    WINDOW_FEATURE_NAMES,
    calendar_features,
    grouped_customer_window_features,
    grouped_terminal_window_features,
)

ESTEIRA = REPO / ".venv" / "bin" / "esteira"
DEFAULT_ROOT = Path("/tmp/handbook-data")
LABEL_DELAY_DAYS = 7
# the book's 15 model inputs: the amount, the 2 calendar flags, 6 customer and 6 terminal windows
FEATURES: list[str] = ["amount", *WINDOW_FEATURE_NAMES]
# the simulator's default data set (the book's), which the manifest must match to be reused
DEFAULT_CONFIG = {"customers": 5000, "terminals": 10000, "days": 183, "start_date": "2018-04-01", "radius": 5.0}
_COLUMNS = ["transaction_id", "timestamp", "card_number", "terminal_id", "amount", "is_fraud", "fraud_scenario"]
_FEATURE_CODE_VERSION = "1"  # bump when the feature code changes, so cached features are recomputed


class HandbookDataError(RuntimeError):
    """The data directory does not hold what the benchmark needs (the message says how to get it)."""


def seed_dir(root: Path, seed: int) -> Path:
    return root / f"seed-{seed}"


def _manifest(directory: Path) -> dict | None:
    path = directory / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def ensure_seed(root: Path, seed: int) -> tuple[Path, bool]:
    """Generate `root/seed-N` with the simulator's CLI unless a manifest of the same config is there.

    Returns (directory, generated now?). A directory with another config is regenerated (--overwrite).
    """
    directory = seed_dir(root, seed)
    wanted = {**DEFAULT_CONFIG, "seed": seed}
    manifest = _manifest(directory)
    if manifest is not None and all(manifest["config"].get(k) == v for k, v in wanted.items()):
        return directory, False
    command = [str(ESTEIRA), "data", "fraud", "--profile", "handbook", "--seed", str(seed), "--out", str(directory),
               "--no-progress"]
    if directory.exists():
        command.append("--overwrite")
    print("generating:", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return directory, True


@dataclass(frozen=True)
class Transactions:
    """One seed's transactions with the 15 features, in time order; `day` counts from 2018-04-01."""

    frame: pd.DataFrame
    manifest: dict

    @property
    def seed(self) -> int:
        return int(self.manifest["config"]["seed"])


def _fingerprint(manifest: dict) -> str:
    facts = {k: v for k, v in manifest.items() if k != "generation_seconds"}
    facts["spans"] = [{k: v for k, v in span.items() if "second" not in k} for span in facts.get("spans", [])]
    text = json.dumps(facts, sort_keys=True) + _FEATURE_CODE_VERSION
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load(directory: Path, cache: bool = True) -> Transactions:
    """Raw CSVs -> features (cached beside the seeds as parquet, keyed by the manifest's content)."""
    manifest = _manifest(directory)
    if manifest is None:
        raise HandbookDataError(f"{directory} has no manifest.json: generate it with `esteira data fraud "
                                f"--profile handbook --seed N --out {directory}` (or `make bench-fraud-handbook`)")
    cache_path = directory.parent / ".features" / f"{directory.name}-{_fingerprint(manifest)}.parquet"
    if cache and cache_path.exists():
        return Transactions(pd.read_parquet(cache_path), manifest)
    files = sorted(directory.glob("span-*/transactions.csv"))
    if len(files) != len(manifest["spans"]):
        raise HandbookDataError(f"{directory} holds {len(files)} span files but its manifest lists "
                                f"{len(manifest['spans'])}: regenerate with --overwrite")
    frame = pd.concat([pd.read_csv(f, usecols=_COLUMNS, engine="pyarrow") for f in files], ignore_index=True)
    frame = add_features(frame, int(manifest["origin_seconds"]))
    if cache:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(cache_path, index=False)
    return Transactions(frame, manifest)


def add_features(frame: pd.DataFrame, origin_seconds: int, delay_days: int = LABEL_DELAY_DAYS) -> pd.DataFrame:
    """The book's features beside the raw columns, rows sorted by (timestamp, transaction_id)."""
    frame = frame.sort_values(["timestamp", "transaction_id"], kind="stable").reset_index(drop=True)
    times = frame["timestamp"].to_numpy(np.int64)
    out = {"day": day_index(times, origin_seconds)}
    out.update(calendar_features(times))
    out.update(grouped_customer_window_features(frame["card_number"].to_numpy(), times,
                                                frame["amount"].to_numpy(np.float64),
                                                transaction_ids=frame["transaction_id"].to_numpy()))
    out.update(grouped_terminal_window_features(frame["terminal_id"].to_numpy(), times,
                                                frame["is_fraud"].to_numpy(), delay_days=delay_days))
    features = pd.DataFrame(out, index=frame.index)
    return pd.concat([frame, features[["day", *WINDOW_FEATURE_NAMES]]], axis=1)


def book_split(end_day: int, delay_days: int = LABEL_DELAY_DAYS) -> TimeSplit:
    """7 train days, the delay, 7 test days ending on end_day (135 = 2018-08-14: the book's single split)."""
    return TimeSplit(train_days=7, delay_days=delay_days, eval_days=7, end_day=end_day)


SINGLE_SPLIT = book_split(135)  # train 2018-07-25..07-31 (days 115..121), test 08-08..08-14 (129..135)


def split(frame: pd.DataFrame, time_split: TimeSplit) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, test rows without the cards already known compromised), as the book builds them."""
    first, last = time_split.train_range
    days = frame["day"].to_numpy()
    train = frame[(days >= first) & (days <= last)]
    first_eval, last_eval = time_split.eval_range
    in_eval = (days >= first_eval) & (days <= last_eval)
    window = (days >= time_split.first_day) & (days <= last_eval)
    known = np.zeros(len(frame), dtype=bool)
    sub = frame[window]
    known[np.flatnonzero(window)] = known_compromised(sub["day"].to_numpy(), sub["card_number"].to_numpy(),
                                                      sub["is_fraud"].to_numpy(), time_split)
    test = frame[in_eval & ~known]
    return train, test


def day_to_date(day: int, start_date: str = "2018-04-01") -> str:
    return str(np.datetime64(start_date) + np.timedelta64(int(day), "D"))
