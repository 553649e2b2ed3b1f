"""The Fraud Detection Handbook benchmark end to end (`make bench-fraud-handbook`): generate the seeds
that are missing, (a) the five baselines on the single split over the seeds, (b) the prequential
protocol with tuned models on one seed, then JSON, Markdown and PNGs under results/, each recording
the machine, date, command and load average."""
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pandas as pd  # noqa: E402

import plots  # noqa: E402
import prequential  # noqa: E402
import single_split  # noqa: E402
import weekly  # noqa: E402
from compare import markdown as comparison_markdown  # noqa: E402
from data import DEFAULT_ROOT, REPO, add_features, ensure_seed, load  # noqa: E402


def machine() -> dict[str, Any]:
    def version(module: str) -> str | None:
        try:
            return __import__(module).__version__
        except ImportError:
            return None

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    return {"uname": " ".join(platform.uname()), "nproc": os.cpu_count(),
            "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": shlex.join([Path(sys.executable).name, *sys.argv]), "git_commit": commit,
            "load_average_start": list(os.getloadavg()), "nice": os.nice(0),
            "versions": {m: version(m) for m in ("numpy", "pandas", "sklearn", "xgboost")}}


def header(record: dict[str, Any]) -> str:
    return (f"Measured {record['date_utc']} on `{record['uname']}` ({record['nproc']} CPUs, nice {record['nice']}), "
            f"load average {' / '.join(f'{x:.2f}' for x in record['load_average_start'])} at start, "
            f"{' / '.join(f'{x:.2f}' for x in record['load_average_end'])} at end; "
            f"{record['wall_seconds'] / 60:.1f} min; commit {record['git_commit'][:10]}; "
            f"versions {record['versions']}.\n\nCommand: `{record['command']}`\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="where seed-N/ data sets live (default %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--prequential-seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=200, help="card-bootstrap rounds (default %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--book-raw", type=Path, default=None,
                        help="the book's published data (a clone of Fraud-Detection-Handbook/simulated-data-raw, "
                             "its data/ folder): the baselines are also run on it, to check features and split "
                             "against the book")
    parser.add_argument("--skip", choices=["single", "prequential", "weekly"], action="append", default=[])
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    record = machine()

    def finish(result: dict[str, Any], stem: str, table: str) -> None:
        record.update(load_average_end=list(os.getloadavg()), wall_seconds=round(time.monotonic() - started, 1))
        (args.out / f"{stem}.json").write_text(json.dumps({"machine": record, **result}, indent=1) + "\n",
                                               encoding="utf-8")
        (args.out / f"{stem}.md").write_text(header(record) + "\n" + table, encoding="utf-8")
        print(table, flush=True)

    if "single" not in args.skip:
        result, curves = single_split.run(args.root, args.seeds, args.book_raw)
        seed = args.seeds[0]
        plots.pr_curves({n: (c["labels"], c["scores"]) for n, c in curves.items()},
                        f"Single split, seed {seed} (test 2018-08-08..14)", args.out / "single_split_pr_curves.png")
        plots.cp_per_day({n: {int(d): v for d, v in single_split_cp(result, n, seed).items()} for n in curves},
                         f"CP@100 per day, single split, seed {seed}", args.out / "single_split_cp100_per_day.png")
        finish(result, "single_split", single_split.markdown(result))
    if "weekly" not in args.skip:
        started = time.monotonic()
        record = machine()
        frames = {f"seed {seed}": load(ensure_seed(args.root, seed)[0]).frame for seed in args.seeds}
        if args.book_raw is not None:
            from book_data import ORIGIN_SECONDS, load_book_raw

            frames["book's data"] = add_features(load_book_raw(args.book_raw), ORIGIN_SECONDS)
        result = weekly.run(frames)
        finish(result, "weekly", weekly.markdown(result))
    if "prequential" not in args.skip:
        started = time.monotonic()
        record = machine()
        directory, _ = ensure_seed(args.root, args.prequential_seed)
        frame = load(directory).frame
        out_dir = args.out / "prequential"
        result = prequential.run(frame, out_dir, rounds=args.rounds)
        result["seed"] = args.prequential_seed
        folds = pd.read_parquet(out_dir / "folds.parquet")
        predictions = {p.stem: pd.read_parquet(p) for p in sorted((out_dir / "predictions").glob("*.parquet"))}
        plots.prequential_plots(folds, predictions, args.out)
        finish(result, "prequential", prequential_markdown(result))
    return 0


def single_split_cp(result: dict[str, Any], model: str, seed: int) -> dict[str, float]:
    entry = next(s for s in result["seeds"] if s["seed"] == seed)
    return entry["models"][model]["card_precision_at_100_per_day"]


def prequential_markdown(result: dict[str, Any]) -> str:
    lines = [f"Prequential protocol, seed {result['seed']}: mean ± std over 4 test folds, 95 % card-bootstrap "
             f"intervals ({result['comparison']['bootstrap_rounds']} rounds); hyper-parameters by "
             f"{result['selection']}.", "", comparison_markdown(result["comparison"]),
             "| fold | train | test | train tx (frauds) | test tx (frauds) |", "|---|---|---|---|---|"]
    for f, (dates, counts) in enumerate(zip(result["test_folds"], result["fold_counts"], strict=True)):
        lines.append(f"| {f} | {' .. '.join(dates['train'])} | {' .. '.join(dates['eval'])} | "
                     f"{counts['train']['transactions']:,} ({counts['train']['frauds']}) | "
                     f"{counts['test']['transactions']:,} ({counts['test']['frauds']}) |")
    lines += ["", "Validation folds (model selection): " + "; ".join(
        f"train {' .. '.join(d['train'])}, test {' .. '.join(d['eval'])}" for d in result["validation_folds"]), "",
        "| model | grid | chosen | validation AP |", "|---|---|---|---|"]
    for name, t in result["tuning"].items():
        best = max(t["trials"], key=lambda x: x["validation_ap"])
        lines.append(f"| {name} | {t['grid']} | {t['best_params']} | {best['validation_ap']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
