"""The Fraud Detection Handbook's transaction simulator, written in Esteira's raw layout.

Why: the handbook (Le Borgne et al., ULB, 2022, Chapter 3 "Transaction data simulator") is the one
public card-fraud benchmark whose generator, protocol and results are all published, so a model
measured on its data can be compared with the book's baselines. This is an independent
implementation from the book's description (its code is GPL-3.0 and is not used here):

- customers: x, y ~ U(0, 100); mean_amount ~ U(5, 100); std_amount = mean_amount / 2;
  mean_nb_tx_per_day ~ U(0, 4); each uses the terminals at Euclidean distance < r;
- terminals: x, y ~ U(0, 100);
- each day, each customer makes Poisson(mean_nb_tx_per_day) draws; a draw's time of day is
  N(43200, 20000) seconds, truncated to whole seconds, and a draw outside 0 < t < 86400 is dropped
  (not redrawn); its amount is N(mean, std), a negative draw replaced by U(0, 2 * mean), rounded to
  2 decimals; its terminal is uniform among the customer's terminals;
- fraud scenarios, in this order (a later one overrides an earlier one's label):
  1. amount > 220;
  2. each day 2 terminals are compromised: all their transactions on that day and the 27 after are fraud;
  3. each day 3 customers are compromised: of their n transactions over that day and the 13 after,
     int(n / 3) drawn at random get their amount multiplied by 5 and are fraud.

Streaming with bounded memory: scenario 2 only needs, per terminal, the last day it stays
compromised (one int array). Scenario 3 needs the customer's transactions over a 14-day block
before it can draw int(n/3) of them, so the last 14 days of rows are held in memory (about 140,000
rows at the default size) and a day is written once every block covering it is complete. This
makes the draw exactly the book's (the same n, the same uniform sample without replacement, blocks
processed in start-day order so overlapping compromises of one customer compound as in the book),
not an approximation. Blocks that run past the last day are cut there, as in the book.

Layout (the same front door as `fraud_simulator.py`):

    OUT/manifest.json                 parameters, per-span and per-scenario counts, generation time
    OUT/span-0001/transactions.csv    day 1 (span 1) = --start-date
    OUT/span-0002/transactions.csv    ...

Each customer also carries synthetic Brazilian personal data (name, valid CPF, e-mail, phone, one
Luhn-valid card, birth date, CEP), fixed per customer, so the anonymizing ExampleGen and the leak
scan have real personal data to remove. Same arguments, same CSV bytes.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import time
import unicodedata
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import numpy as np
from tqdm import tqdm

from errors import EsteiraError
from pipeline.datasets.files import remove_spans_after, write_text
from pipeline.datasets.fraud_simulator import cpf_check_digits, luhn_check_digit

COLUMNS = [
    "transaction_id",
    "timestamp",
    "customer_name",
    "cpf",
    "email",
    "phone",
    "card_number",
    "birth_date",
    "customer_cep",
    "terminal_id",
    "amount",
    "is_fraud",
    "fraud_scenario",
]
PII_COLUMNS = ["customer_name", "cpf", "email", "phone", "card_number", "birth_date", "customer_cep"]
DIGIT_COLUMNS = ("cpf", "phone", "customer_cep")  # also searched as bare digits by a leak scan
INPUT_PATTERN = "span-{SPAN:4}/*.csv"
FILE_NAME = "transactions.csv"
DAY_SECONDS = 86_400
SCENARIO_NAMES = {1: "amount_over_220", 2: "compromised_terminal", 3: "compromised_customer"}

# The book's constants (reference §1).
TIME_MEAN_SECONDS = 43_200.0
TIME_STD_SECONDS = 20_000.0
AMOUNT_THRESHOLD = 220.0
COMPROMISED_TERMINALS_PER_DAY = 2
TERMINAL_COMPROMISE_DAYS = 28
COMPROMISED_CUSTOMERS_PER_DAY = 3
CUSTOMER_COMPROMISE_DAYS = 14
CUSTOMER_FRAUD_SHARE_DIVISOR = 3
CUSTOMER_FRAUD_AMOUNT_FACTOR = 5.0

# Independent random streams (numpy SeedSequence keys), so changing one draw never shifts another.
_CUSTOMERS, _TERMINALS, _DAY, _BAD_TERMINALS, _BAD_CUSTOMERS, _BAD_CUSTOMER_TX, _PERSONAL = range(7)

# Synthetic personal data: kept short and local to this module (the other simulator has its own).
_FIRST_NAMES = [
    "Ana", "Maria", "Juliana", "Fernanda", "Camila", "Beatriz", "Larissa", "Patrícia", "Aline", "Mariana",
    "Gabriela", "Letícia", "Vanessa", "Bruna", "Amanda", "Rafaela", "Carolina", "Isabela", "Luana", "Tatiane",
    "João", "José", "Carlos", "Paulo", "Lucas", "Pedro", "Gabriel", "Rafael", "Marcos", "Felipe",
    "Bruno", "Rodrigo", "Eduardo", "Gustavo", "Thiago", "Diego", "Leonardo", "Matheus", "André", "Vinícius",
]
_SURNAMES = [
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes",
    "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira", "Barbosa",
    "Rocha", "Dias", "Nascimento", "Andrade", "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas",
]
_EMAIL_DOMAINS = ["gmail.com", "hotmail.com", "outlook.com", "yahoo.com.br", "uol.com.br"]
_CARD_PREFIXES = ["453201", "401178", "516292", "522688", "636368", "650487"]
# (first and last 5-digit CEP prefix, phone area code) of a few state capitals
_REGIONS = [(1000, 5999, 11), (20000, 23799, 21), (30000, 31999, 31), (40000, 42499, 71),
            (50000, 52999, 81), (60000, 61599, 85), (70000, 72799, 61), (80000, 82999, 41),
            (90000, 91999, 51)]


class HandbookError(EsteiraError, ValueError):
    """A bad argument; the message names the flag and the fix."""


@dataclass(frozen=True)
class HandbookConfig:
    """The book's simulation parameters; the defaults are the book's data set."""

    customers: int = 5_000
    terminals: int = 10_000
    days: int = 183
    seed: int = 0
    start_date: date = date(2018, 4, 1)
    radius: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.days <= 9999:
            raise HandbookError(f"--days must be between 1 and 9999 (got {self.days}; span folders have "
                                "4 digits); the book uses --days 183")
        if self.customers < 1:
            raise HandbookError(f"--customers must be at least 1 (got {self.customers}); the book uses "
                                "--customers 5000")
        if self.terminals < 1:
            raise HandbookError(f"--terminals must be at least 1 (got {self.terminals}); the book uses "
                                "--terminals 10000")
        if not self.radius > 0:
            raise HandbookError(f"--radius must be greater than 0 (got {self.radius:g}); the book uses --radius 5")

    @property
    def origin_seconds(self) -> int:
        """Epoch seconds (UTC) of midnight of day 0."""
        start = datetime(self.start_date.year, self.start_date.month, self.start_date.day, tzinfo=UTC)
        return int(start.timestamp())


def _rng(config: HandbookConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, *key])


# -- profiles --------------------------------------------------------------------------------------


@dataclass
class Profiles:
    """Customer and terminal profiles; the customers' terminals as a CSR list (offsets into `terminals`)."""

    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_tx_per_day: np.ndarray
    terminal_offsets: np.ndarray  # customer c uses terminal_index[offsets[c]:offsets[c + 1]]
    terminal_index: np.ndarray

    @property
    def terminals_per_customer(self) -> np.ndarray:
        return np.diff(self.terminal_offsets)


def build_profiles(config: HandbookConfig, chunk: int = 256) -> Profiles:
    """The book's profiles. Terminals within the radius are found chunk by chunk of customers."""
    rng = _rng(config, _CUSTOMERS)
    customer_xy = rng.uniform(0, 100, size=(config.customers, 2))
    mean_amount = rng.uniform(5, 100, size=config.customers)
    mean_tx = rng.uniform(0, 4, size=config.customers)
    terminal_xy = _rng(config, _TERMINALS).uniform(0, 100, size=(config.terminals, 2))
    counts: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    for start in range(0, config.customers, chunk):
        block = customer_xy[start:start + chunk]
        squared = ((block[:, None, :] - terminal_xy[None, :, :]) ** 2).sum(axis=2)
        rows, cols = np.nonzero(squared < config.radius ** 2)  # row-major: each customer's terminals ascending
        counts.append(np.bincount(rows, minlength=len(block)))
        indices.append(cols)
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
    return Profiles(mean_amount, mean_amount / 2, mean_tx, offsets, np.concatenate(indices).astype(np.int64))


# -- personal data ---------------------------------------------------------------------------------


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()


def _unique_digits(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """n distinct random numbers of `width` digits (as ints), so no two customers share a CPF or card."""
    values = rng.integers(0, 10 ** width, size=n)
    while True:
        _, first = np.unique(values, return_index=True)
        duplicate = np.setdiff1d(np.arange(n), first)
        if not len(duplicate):
            return values
        values[duplicate] = rng.integers(0, 10 ** width, size=len(duplicate))


def _cpf(body: int) -> str:
    digits = [int(ch) for ch in f"{body:09d}"]
    if len(set(digits)) == 1:  # 111.111.111-11 and the like are invalid CPFs
        digits[0] = (digits[0] + 1) % 10
    d1, d2 = cpf_check_digits(digits)
    s = "".join(map(str, digits))
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{d1}{d2}"


def personal_data(config: HandbookConfig) -> list[list[str]]:
    """One row of PII_COLUMNS values per customer, fixed for the seed."""
    rng = _rng(config, _PERSONAL)
    n = config.customers
    first = rng.integers(len(_FIRST_NAMES), size=n)
    middle = rng.integers(len(_SURNAMES), size=n)
    last = rng.integers(len(_SURNAMES), size=n)
    email_number = rng.integers(1, 10_000, size=n)
    domain = rng.integers(len(_EMAIL_DOMAINS), size=n)
    region = rng.integers(len(_REGIONS), size=n)
    phone = rng.integers(0, 10 ** 8, size=n)
    cep_prefix = rng.integers([_REGIONS[r][0] for r in region], [_REGIONS[r][1] + 1 for r in region])
    cep_suffix = rng.integers(0, 1000, size=n)
    age_days = (rng.uniform(18, 85, size=n) * 365.25).astype(int)
    cpf_body = _unique_digits(rng, n, 9)
    card_prefix = rng.integers(len(_CARD_PREFIXES), size=n)
    card_body = _unique_digits(rng, n, 9)
    people = []
    for c in range(n):
        partial = f"{_CARD_PREFIXES[card_prefix[c]]}{card_body[c]:09d}"
        people.append([
            f"{_FIRST_NAMES[first[c]]} {_SURNAMES[middle[c]]} {_SURNAMES[last[c]]}",
            _cpf(int(cpf_body[c])),
            f"{_ascii(_FIRST_NAMES[first[c]])}.{_ascii(_SURNAMES[last[c]])}{email_number[c]}@"
            f"{_EMAIL_DOMAINS[domain[c]]}",
            f"+55 {_REGIONS[region[c]][2]} 9{phone[c] // 10_000:04d}-{phone[c] % 10_000:04d}",
            partial + str(luhn_check_digit(partial)),
            (config.start_date - timedelta(days=int(age_days[c]))).isoformat(),
            f"{cep_prefix[c]:05d}-{cep_suffix[c]:03d}",
        ])
    return people


def personal_values(out_dir: Path) -> set[str]:
    """Every raw personal value written under ``out_dir``, as written and, for numbers, as bare digits:
    the needles a leak scan looks for in pipeline outputs (the same contract as fraud_simulator's)."""
    values: set[str] = set()
    for path in sorted(Path(out_dir).glob("span-*/*.csv")):
        with path.open(newline="", encoding="utf-8") as stream:
            reader = csv.reader(stream)
            header = next(reader)
            pii = [header.index(column) for column in PII_COLUMNS]
            digits = [header.index(column) for column in DIGIT_COLUMNS]
            seen: set[tuple[str, ...]] = set()
            for row in reader:
                seen.add(tuple(row[i] for i in pii + digits))
        for record in seen:
            values.update(record[:len(pii)])
            values.update(re.sub(r"\D", "", value) for value in record[len(pii):])
    return {value for value in values if value}


# -- transactions ----------------------------------------------------------------------------------


@dataclass
class Day:
    """One day's transactions as columns, sorted by time of day."""

    index: int
    customer: np.ndarray
    second: np.ndarray  # whole seconds since midnight, 0 < second < 86400
    terminal: np.ndarray
    amount: np.ndarray
    scenario: np.ndarray  # 0 legitimate, else the scenario that made it fraud (the last one applied)

    def __len__(self) -> int:
        return len(self.customer)


def draw_day(config: HandbookConfig, profiles: Profiles, day: int) -> Day:
    """The day's legitimate transactions, all customers at once."""
    rng = _rng(config, _DAY, day)
    degree = profiles.terminals_per_customer
    draws = rng.poisson(profiles.mean_tx_per_day)
    draws[degree == 0] = 0  # a customer without terminals in reach makes no transactions
    customer = np.repeat(np.arange(config.customers), draws)
    second = np.trunc(rng.normal(TIME_MEAN_SECONDS, TIME_STD_SECONDS, size=len(customer))).astype(np.int64)
    kept = (second > 0) & (second < DAY_SECONDS)  # out-of-range draws are dropped, not redrawn
    customer, second = customer[kept], second[kept]
    mean, std = profiles.mean_amount[customer], profiles.std_amount[customer]
    amount = rng.normal(mean, std)
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    amount = np.round(amount, 2)
    pick = np.floor(rng.random(len(customer)) * degree[customer]).astype(np.int64)
    terminal = profiles.terminal_index[profiles.terminal_offsets[customer] + pick]
    order = np.argsort(second, kind="stable")
    return Day(day, customer[order], second[order], terminal[order], amount[order],
               np.zeros(len(customer), dtype=np.int8)[order])


def compromised_terminals(config: HandbookConfig, day: int) -> np.ndarray:
    """Scenario 2: the terminals compromised on `day` (distinct), fraudulent that day and 27 more."""
    return _rng(config, _BAD_TERMINALS, day).choice(
        config.terminals, size=min(COMPROMISED_TERMINALS_PER_DAY, config.terminals), replace=False)


def compromised_customers(config: HandbookConfig, day: int) -> np.ndarray:
    """Scenario 3: the customers compromised on `day` (distinct); a third of their next 14 days is fraud."""
    return _rng(config, _BAD_CUSTOMERS, day).choice(
        config.customers, size=min(COMPROMISED_CUSTOMERS_PER_DAY, config.customers), replace=False)


@dataclass
class ScenarioCounts:
    """Rows and frauds of one span."""

    span: int
    date: str
    rows: int = 0
    fraud_rows: int = 0
    fraud_by_scenario: dict[str, int] = field(default_factory=dict)


class Simulation:
    """Days in order; scenario 2 through a per-terminal "compromised until" day, scenario 3 through a
    14-day buffer of rows (see the module docstring for why that is exact)."""

    def __init__(self, config: HandbookConfig, profiles: Profiles) -> None:
        self.config = config
        self.profiles = profiles
        self.compromised_until = np.full(config.terminals, -1, dtype=np.int64)
        self.buffer: deque[Day] = deque()
        self.pending: deque[tuple[int, np.ndarray]] = deque()  # (start day, compromised customers)

    def step(self, day: int) -> list[Day]:
        """Simulate `day`; return the days now final (all their scenario-3 blocks drawn)."""
        config = self.config
        today = draw_day(config, self.profiles, day)
        today.scenario[today.amount > AMOUNT_THRESHOLD] = 1
        bad_terminals = compromised_terminals(config, day)
        self.compromised_until[bad_terminals] = np.maximum(
            self.compromised_until[bad_terminals], day + TERMINAL_COMPROMISE_DAYS - 1)
        today.scenario[self.compromised_until[today.terminal] >= day] = 2
        self.pending.append((day, compromised_customers(config, day)))
        self.buffer.append(today)
        # The block that started CUSTOMER_COMPROMISE_DAYS - 1 days ago ends today.
        while self.pending and self.pending[0][0] <= day - CUSTOMER_COMPROMISE_DAYS + 1:
            self._compromise_customers(*self.pending.popleft())
        ready = []
        while self.buffer and self.buffer[0].index <= day - CUSTOMER_COMPROMISE_DAYS + 1:
            ready.append(self.buffer.popleft())
        return ready

    def finish(self) -> list[Day]:
        """After the last day: the remaining blocks, cut at the last day, then the buffered days."""
        while self.pending:
            self._compromise_customers(*self.pending.popleft())
        ready = list(self.buffer)
        self.buffer.clear()
        return ready

    def _compromise_customers(self, start: int, customers: np.ndarray) -> None:
        block = [d for d in self.buffer if start <= d.index < start + CUSTOMER_COMPROMISE_DAYS]
        for position, customer in enumerate(customers.tolist()):
            rows = [(d, np.flatnonzero(d.customer == customer)) for d in block]
            n = sum(len(where) for _d, where in rows)
            chosen = _rng(self.config, _BAD_CUSTOMER_TX, start, position).choice(
                n, size=n // CUSTOMER_FRAUD_SHARE_DIVISOR, replace=False)
            chosen.sort()
            first = 0
            for d, where in rows:
                mine = chosen[(chosen >= first) & (chosen < first + len(where))] - first
                hit = where[mine]
                d.amount[hit] = np.round(d.amount[hit] * CUSTOMER_FRAUD_AMOUNT_FACTOR, 2)
                d.scenario[hit] = 3
                first += len(where)


def _pii_fragments(people: list[list[str]]) -> list[str]:
    """Each customer's personal columns as one CSV fragment (quoted where CSV needs it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for person in people:
        writer.writerow(person)
    return buffer.getvalue().splitlines()


def _write_day(day: Day, path: Path, pii: list[str], origin: int, first_id: int) -> None:
    timestamps = (origin + day.index * DAY_SECONDS + day.second).tolist()
    lines = [",".join(COLUMNS)]
    lines.extend(
        f"{first_id + i},{t},{pii[c]},{term},{amount:.2f},{int(s > 0)},{s}"
        for i, (t, c, term, amount, s) in enumerate(zip(
            timestamps, day.customer.tolist(), day.terminal.tolist(), day.amount.tolist(), day.scenario.tolist(),
            strict=True))
    )
    write_text(path, "\n".join(lines) + "\n")  # complete or absent; untouched when its bytes are the same


def _clear_spans(out_dir: Path, overwrite: bool, days: int) -> None:
    existing = sorted(out_dir.glob("span-*")) if out_dir.exists() else []
    if existing and not overwrite:
        raise HandbookError(f"--out {out_dir} already holds spans ({existing[0].name} ...); choose an empty "
                            "directory or pass --overwrite")
    remove_spans_after(out_dir, days)


def simulate(config: HandbookConfig, out_dir: Path, progress: bool | None = None,
             overwrite: bool = False) -> list[ScenarioCounts]:
    """Write one CSV per day under `out_dir` plus `manifest.json`; return per-span counts."""
    out_dir = Path(out_dir)
    _clear_spans(out_dir, overwrite, config.days)
    started = time.monotonic()
    profiles = build_profiles(config)
    pii = _pii_fragments(personal_data(config))
    simulation = Simulation(config, profiles)
    summaries: list[ScenarioCounts] = []
    next_id = 0

    def write(days: list[Day]) -> None:
        nonlocal next_id
        for day in days:
            span = day.index + 1
            summary = ScenarioCounts(span, (config.start_date + timedelta(days=day.index)).isoformat())
            span_dir = out_dir / f"span-{span:04d}"
            span_dir.mkdir(parents=True, exist_ok=True)
            _write_day(day, span_dir / FILE_NAME, pii, config.origin_seconds, next_id)
            next_id += len(day)
            summary.rows = len(day)
            summary.fraud_rows = int((day.scenario > 0).sum())
            counts = np.bincount(day.scenario, minlength=4)
            summary.fraud_by_scenario = {SCENARIO_NAMES[k]: int(counts[k]) for k in (1, 2, 3)}
            summaries.append(summary)

    expected = 2 * config.customers * config.days  # E[Poisson(U(0, 4))] = 2 draws per customer and day
    show = expected >= 100_000 if progress is None else progress
    with tqdm(total=config.days, unit="day", disable=not show, desc="simulating") as bar:
        for day in range(config.days):
            write(simulation.step(day))
            bar.update(1)
        write(simulation.finish())
    _write_manifest(config, out_dir, summaries, profiles, time.monotonic() - started)
    return summaries


def _write_manifest(config: HandbookConfig, out_dir: Path, summaries: list[ScenarioCounts],
                    profiles: Profiles, seconds: float) -> None:
    total = sum(s.rows for s in summaries)
    fraud = sum(s.fraud_rows for s in summaries)
    by_scenario = {name: sum(s.fraud_by_scenario[name] for s in summaries) for name in SCENARIO_NAMES.values()}
    manifest = {
        "generator": "esteira fraud simulator, profile handbook (Fraud Detection Handbook, Chapter 3)",
        "config": {**asdict(config), "start_date": config.start_date.isoformat()},
        "origin_seconds": config.origin_seconds,
        "input_pattern": INPUT_PATTERN,
        "columns": COLUMNS,
        "personal_data_columns": PII_COLUMNS,
        "label": "is_fraud",
        "scenarios": {str(k): name for k, name in SCENARIO_NAMES.items()},
        "mean_terminals_per_customer": float(profiles.terminals_per_customer.mean()),
        "transactions": total,
        "fraud_transactions": fraud,
        "fraud_rate": fraud / total if total else 0.0,
        "fraud_by_scenario": by_scenario,
        "generation_seconds": round(seconds, 3),  # the one field that differs between identical runs
        "spans": [asdict(s) for s in summaries],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


# -- command line ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag on one line (exit 2) instead of usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def handbook_main(argv: list[str]) -> int:
    """`esteira data fraud --profile handbook ...`: argv is what follows, without the --profile flag."""
    parser = _Parser(
        prog="esteira data fraud --profile handbook",
        description="The Fraud Detection Handbook's transaction simulator (Le Borgne et al., 2022, Chapter 3); "
                    "one CSV folder per day (span). Defaults are the book's data set.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--customers", type=int, default=5_000, help="number of customers (default 5000)")
    parser.add_argument("--terminals", type=int, default=10_000, help="number of terminals (default 10000)")
    parser.add_argument("--days", type=int, default=183, help="number of days, one span each (default 183)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    parser.add_argument("--start-date", type=date.fromisoformat, default=date(2018, 4, 1),
                        help="date of span 1, YYYY-MM-DD (default 2018-04-01)")
    parser.add_argument("--radius", type=float, default=5.0,
                        help="a customer uses the terminals closer than this (default 5, on a 100 x 100 grid)")
    parser.add_argument("--overwrite", action="store_true", help="replace spans already in --out")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: on from 100000 expected transactions)")
    args = parser.parse_args(argv)
    try:
        config = HandbookConfig(customers=args.customers, terminals=args.terminals, days=args.days,
                                seed=args.seed, start_date=args.start_date, radius=args.radius)
        summaries = simulate(config, args.out, progress=args.progress, overwrite=args.overwrite)
    except HandbookError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    total = sum(s.rows for s in summaries)
    fraud = sum(s.fraud_rows for s in summaries)
    manifest = json.loads((Path(args.out) / "manifest.json").read_text(encoding="utf-8"))
    print(f"wrote {total} transactions ({fraud} fraudulent, {fraud / max(total, 1):.2%}; by scenario "
          f"{manifest['fraud_by_scenario']}) in {len(summaries)} spans to {args.out}/span-NNNN/{FILE_NAME} "
          f"in {manifest['generation_seconds']:.1f} s; ExampleGen pattern: {INPUT_PATTERN}")
    return 0

