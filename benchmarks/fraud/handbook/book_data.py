"""The book's own published data set (github.com/Fraud-Detection-Handbook/simulated-data-raw, one pandas
pickle per day), read into the benchmark's raw columns so the features, split and baselines here can
be checked against the book's figures on the very data they were measured on.

The pickles are read by an unpickler that accepts only the pandas/numpy classes a DataFrame is built
from (a pickle can otherwise run any code). The data is not part of this repository: clone it and
pass `--book-raw <clone>/data` to run.py.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

ORIGIN_SECONDS = 1_522_540_800  # 2018-04-01T00:00:00Z, the book's day 0

_ALLOWED = {
    ("pandas.core.frame", "DataFrame"), ("pandas.core.internals.managers", "BlockManager"),
    ("pandas.core.indexes.base", "_new_Index"), ("pandas.core.indexes.base", "Index"),
    ("pandas.core.indexes.numeric", "Int64Index"), ("pandas.core.indexes.range", "RangeIndex"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("builtins", "slice"),
}
# names that moved since the pickles were written (pandas 1.x, numpy 1.x)
_MOVED = {("pandas.core.indexes.numeric", "Int64Index"): ("pandas", "Index"),
          ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct")}


class _DataFrameOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}: only a plain DataFrame is expected")
        module, name = _MOVED.get((module, name), (module, name))
        return super().find_class(module, name)


def load_book_raw(directory: Path) -> pd.DataFrame:
    """The book's 183 daily pickles as the benchmark's raw columns (the book's customer id as card)."""
    paths = sorted(Path(directory).glob("*.pkl"))
    if not paths:
        raise FileNotFoundError(f"no *.pkl under {directory}: clone github.com/Fraud-Detection-Handbook/"
                                "simulated-data-raw and pass its data/ folder")
    frames = []
    for path in paths:
        with path.open("rb") as stream:
            frames.append(_DataFrameOnly(stream).load())
    raw = pd.concat(frames, ignore_index=True)
    return pd.DataFrame({
        "transaction_id": raw["TRANSACTION_ID"].astype(np.int64),
        "timestamp": raw["TX_TIME_SECONDS"].astype(np.int64) + ORIGIN_SECONDS,
        "card_number": raw["CUSTOMER_ID"].astype(np.int64),
        "terminal_id": raw["TERMINAL_ID"].astype(np.int64),
        "amount": raw["TX_AMOUNT"].astype(np.float64),
        "is_fraud": raw["TX_FRAUD"].astype(np.int64),
        "fraud_scenario": raw["TX_FRAUD_SCENARIO"].astype(np.int64),
    })
