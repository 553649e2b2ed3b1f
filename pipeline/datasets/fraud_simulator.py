"""Card-transaction simulator: customers with personal data, merchants, days of transactions, fraud.

No public card-fraud data can be downloaded where this project runs, so the fraud use case brings
its own data. The output imitates what an issuer's raw export looks like, personal data included,
so that the privacy step has something real to remove:

    OUT/manifest.json                 parameters, per-span row and fraud counts (no personal data)
    OUT/span-0001/transactions.csv    day 1 (span 1)
    OUT/span-0002/transactions.csv    day 2 ...

ExampleGen addresses a span with the pattern `span-{SPAN:4}/*.csv` (see `INPUT_PATTERN`).

Realism, and honesty about how hard fraud is to see in one transaction:
- Fraud is rare (default 0.3 % of transactions) and overlaps legitimate behaviour. Legitimate
  customers take trips (every purchase of a trip is far from home), change phones, own a second
  device and now and then pay from a fresh browser; fraud also happens at home on the usual device.
- Log-normal amounts per merchant category, daily and weekly cycles. Fraud amounts are drawn from
  the same category distributions as the victim's own spending, scaled up moderately.
- Four fraud scenarios: card testing (a few small online purchases from a new device, then maybe a
  larger one), account takeover (phished credentials from a new device, or a remote-access trojan on
  the victim's own phone; older cardholders are targeted more), compromised merchant (cards skimmed at
  a breached merchant are cloned and used hours later, in another city or the victim's own) and
  friendly fraud (someone close to the cardholder, or the cardholder disputing: near home, the usual
  device, ordinary shops).
- Labels arrive late: `label_available_at` is when each fraud became known (the incident's chargeback
  or report, days to weeks later; empty for legitimate rows). It is ground truth about the label, not
  something a model may see at scoring time.
- Behaviour drifts from day to day: online spending grows, prices inflate, and the fraud mix moves
  from card cloning towards account takeover and friendly fraud (`category_weights_on`,
  `amount_factor_on`, `fraud_mix_on`), slowly enough that one day resembles the next.

Deterministic for a seed; streams one hour of one day at a time, so memory stays bounded.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.datasets.files import publish, remove_spans_after

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
    "device_id",
    "merchant_id",
    "merchant_category",
    "merchant_lat",
    "merchant_lon",
    "channel",
    "amount",
    "distance_from_home_km",
    "is_fraud",
    "fraud_scenario",
    "label_available_at",
]
PII_COLUMNS = ["customer_name", "cpf", "email", "phone", "card_number", "birth_date", "customer_cep"]
INPUT_PATTERN = "span-{SPAN:4}/*.csv"
DIGIT_COLUMNS = ("cpf", "phone", "customer_cep")  # also searched as bare digits


def personal_values(out_dir: Path) -> set[str]:
    """Every raw personal value the simulator wrote under ``out_dir``, as written and, for numbers,
    as bare digits: the needles a leak scan looks for in pipeline outputs."""
    import re

    values: set[str] = set()
    for path in sorted(Path(out_dir).glob("span-*/*.csv")):
        with path.open(newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                values.update(row[column] for column in PII_COLUMNS)
                values.update(re.sub(r"\D", "", row[column]) for column in DIGIT_COLUMNS)
    return {value for value in values if value}
FILE_NAME = "transactions.csv"
SCENARIOS = ["", "card_testing", "account_takeover", "compromised_merchant", "friendly_fraud"]
CARD_TESTING, ACCOUNT_TAKEOVER, COMPROMISED_MERCHANT, FRIENDLY_FRAUD = 1, 2, 3, 4
FRAUD_SCENARIOS = [CARD_TESTING, ACCOUNT_TAKEOVER, COMPROMISED_MERCHANT, FRIENDLY_FRAUD]
DEFAULT_FRAUD_RATE = 0.003
CHANNELS = ["card_present", "online"]
CARD_PRESENT, ONLINE = 0, 1
DAY_SECONDS = 86_400

# name, latitude, longitude, first and last 5-digit CEP prefix, phone area code (DDD), population weight
CITIES = [
    ("Sao Paulo", -23.55, -46.63, 1000, 5999, 11, 12.0),
    ("Rio de Janeiro", -22.91, -43.17, 20000, 23799, 21, 7.0),
    ("Belo Horizonte", -19.92, -43.94, 30000, 31999, 31, 3.0),
    ("Brasilia", -15.79, -47.88, 70000, 72799, 61, 3.0),
    ("Salvador", -12.97, -38.50, 40000, 42499, 71, 3.0),
    ("Fortaleza", -3.73, -38.52, 60000, 61599, 85, 3.0),
    ("Curitiba", -25.43, -49.27, 80000, 82999, 41, 2.0),
    ("Recife", -8.05, -34.88, 50000, 52999, 81, 2.0),
    ("Porto Alegre", -30.03, -51.23, 90000, 91999, 51, 2.0),
    ("Manaus", -3.12, -60.02, 69000, 69099, 92, 2.0),
    ("Belem", -1.46, -48.49, 66000, 66999, 91, 1.5),
    ("Goiania", -16.69, -49.26, 74000, 74899, 62, 1.5),
]

# category, share of legitimate spending, median amount (BRL), log-normal sigma, channel
CATEGORIES = [
    ("grocery", 0.22, 85.0, 0.70, CARD_PRESENT),
    ("restaurant", 0.16, 55.0, 0.60, CARD_PRESENT),
    ("gas_station", 0.10, 150.0, 0.45, CARD_PRESENT),
    ("pharmacy", 0.08, 60.0, 0.70, CARD_PRESENT),
    ("clothing", 0.06, 180.0, 0.70, CARD_PRESENT),
    ("electronics", 0.03, 900.0, 0.80, CARD_PRESENT),
    ("travel", 0.02, 1200.0, 0.70, CARD_PRESENT),
    ("entertainment", 0.05, 70.0, 0.60, CARD_PRESENT),
    ("health", 0.04, 250.0, 0.80, CARD_PRESENT),
    ("home_improvement", 0.04, 220.0, 0.90, CARD_PRESENT),
    ("transport", 0.08, 25.0, 0.50, ONLINE),
    ("online_retail", 0.09, 160.0, 0.90, ONLINE),
    ("digital_goods", 0.03, 30.0, 0.80, ONLINE),
]
_CATEGORY = {name: index for index, (name, *_rest) in enumerate(CATEGORIES)}

# habits: a trip every ~TRIP_EVERY_DAYS_MEAN days on average (gamma-spread: some customers travel for
# work), lasting ~TRIP_DAYS_MEAN days; a new phone every ~DEVICE_CHANGE_EVERY_DAYS days; a second
# device for some, used for part of their online purchases; a fresh device id (new browser, a
# borrowed computer) for a few online purchases
TRIP_EVERY_DAYS_MEAN, TRIP_RATE_SHAPE, TRIP_DAYS_MEAN, TRIP_MAX_DAYS = 60.0, 0.7, 3.0, 14
DEVICE_CHANGE_EVERY_DAYS = 400.0
SECOND_DEVICE_SHARE, SECOND_DEVICE_USE, ONE_OFF_DEVICE_SHARE = 0.35, 0.3, 0.03

# fraud: how often a takeover runs on the victim's own phone (remote-access trojan), how often a cloned
# card is used in another city, which shops cloned cards favour
ACCOUNT_TAKEOVER_OWN_DEVICE, CLONED_CARD_FAR = 0.2, 0.5
CLONED_CARD_CATEGORY_BIAS = {"electronics": 5.0, "clothing": 2.5, "gas_station": 1.5}
# label delay per scenario: median days and log-normal sigma of the time from the incident's last
# fraud to its label (a cardholder's call, a chargeback, a dispute after the statement)
LABEL_DELAY_DAYS = {CARD_TESTING: (3.0, 0.8), ACCOUNT_TAKEOVER: (6.0, 0.7), COMPROMISED_MERCHANT: (10.0, 0.6),
                    FRIENDLY_FRAUD: (30.0, 0.5)}
LABEL_DELAY_MAX_DAYS = 120.0

# drift from day 0 of the simulation: online spending grows by up to ONLINE_GROWTH (relative), prices
# inflate by INFLATION_PER_DAY, the fraud mix moves from FRAUD_MIX_START to FRAUD_MIX_END (card testing,
# takeover, cloning, friendly; per incident: a breach yields several cloned cards, so cloning's share of
# fraudulent rows is about twice its share of incidents), each with time constant *_TAU_DAYS
ONLINE_GROWTH, ONLINE_GROWTH_TAU_DAYS = 0.6, 60.0
INFLATION_PER_DAY = 0.0004
FRAUD_MIX_START = np.array([0.15, 0.35, 0.20, 0.30])
FRAUD_MIX_END = np.array([0.15, 0.40, 0.05, 0.40])
FRAUD_MIX_TAU_DAYS = 45.0

# relative activity per hour of day (lunch and evening peaks) and per weekday (Monday first)
HOURLY = np.array([0.6, 0.35, 0.2, 0.15, 0.15, 0.3, 0.9, 2.0, 3.2, 4.0, 4.6, 5.2,
                   6.2, 6.0, 5.0, 4.8, 5.0, 5.6, 6.4, 6.6, 5.8, 4.4, 2.8, 1.4])
WEEKLY = np.array([0.92, 0.95, 0.97, 1.0, 1.12, 1.18, 0.86])

FIRST_NAMES = [
    "Ana", "Maria", "Juliana", "Fernanda", "Camila", "Beatriz", "Larissa", "Patricia", "Aline", "Mariana",
    "Gabriela", "Leticia", "Vanessa", "Bruna", "Amanda", "Rafaela", "Carolina", "Isabela", "Luana", "Tatiane",
    "João", "José", "Carlos", "Paulo", "Lucas", "Pedro", "Gabriel", "Rafael", "Marcos", "Felipe",
    "Bruno", "Rodrigo", "Eduardo", "Gustavo", "Thiago", "Diego", "Leonardo", "Matheus", "André", "Vinícius",
]
SURNAMES = [
    "Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes",
    "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira", "Barbosa",
    "Rocha", "Dias", "Nascimento", "Andrade", "Moreira", "Nunes", "Marques", "Machado", "Mendes", "Freitas",
    "Cardoso", "Ramos", "Gonçalves", "Santana", "Teixeira", "Araújo", "Pinto", "Correia", "Monteiro", "Batista",
]
EMAIL_DOMAINS = ["gmail.com", "hotmail.com", "outlook.com", "yahoo.com.br", "uol.com.br", "bol.com.br"]
CARD_PREFIXES = ["453201", "401178", "516292", "522688", "636368", "650487"]


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. `customers` and `merchants` default to sizes that scale with `transactions`."""

    transactions: int
    days: int
    seed: int = 0
    fraud_rate: float = DEFAULT_FRAUD_RATE
    customers: int | None = None
    merchants: int | None = None
    start_date: date = date(2024, 1, 1)
    max_chunk_rows: int = 50_000

    def __post_init__(self) -> None:
        if self.transactions < 1:
            raise ValueError("--transactions must be at least 1")
        if not 1 <= self.days <= 9999:
            raise ValueError("--days must be between 1 and 9999 (span folders have 4 digits)")
        if not 0.0 <= self.fraud_rate <= 0.5:
            raise ValueError(f"--fraud-rate must be between 0 and 0.5 (default {DEFAULT_FRAUD_RATE})")
        if self.customers is not None and self.customers < 20:
            raise ValueError("--customers must be at least 20")

    @property
    def n_customers(self) -> int:
        return self.customers or int(np.clip(self.transactions // 20, 50, 50_000))

    @property
    def n_merchants(self) -> int:
        return self.merchants or max(300, self.n_customers // 20)


@dataclass
class SpanSummary:
    span: int
    date: str
    rows: int = 0
    fraud_rows: int = 0
    fraud_by_scenario: dict[str, int] = field(default_factory=dict)


# -- personal data ---------------------------------------------------------------------------------


def cpf_check_digits(first_nine: Sequence[int]) -> tuple[int, int]:
    """The two CPF verification digits (mod-11 with weights 10..2, then 11..2)."""
    d1 = sum(d * w for d, w in zip(first_nine, range(10, 1, -1), strict=True)) * 10 % 11 % 10
    d2 = sum(d * w for d, w in zip([*first_nine, d1], range(11, 1, -1), strict=True)) * 10 % 11 % 10
    return d1, d2


def is_valid_cpf(cpf: str) -> bool:
    digits = [int(ch) for ch in cpf if ch.isdigit()]
    if len(digits) != 11 or len(set(digits)) == 1:
        return False
    return cpf_check_digits(digits[:9]) == (digits[9], digits[10])


def luhn_check_digit(partial: str) -> int:
    """The digit that makes `partial + digit` pass the Luhn check."""
    total = 0
    for position, ch in enumerate(reversed(partial)):
        d = int(ch)
        if position % 2 == 0:  # doubled: these become the odd positions once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return (10 - total % 10) % 10


def is_valid_luhn(number: str) -> bool:
    return luhn_check_digit(number[:-1]) == int(number[-1])


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()


@dataclass
class Population:
    """Customers (personal data, habits, trips, devices over time) and merchants; small next to the
    transactions, so it is built once and kept in memory."""

    names: list[str]
    cpfs: list[str]
    emails: list[str]
    phones: list[str]
    cards: list[str]
    birth_dates: list[str]
    ceps: list[str]
    devices: list[str]  # each customer's first usual device
    city: np.ndarray
    home_lat: np.ndarray
    home_lon: np.ndarray
    activity: np.ndarray  # probability of being the payer of a transaction
    wealth: np.ndarray  # multiplies amounts
    merchant_ids: list[str]
    merchant_category: np.ndarray
    merchant_city: np.ndarray
    merchant_lat: np.ndarray
    merchant_lon: np.ndarray
    pools: dict[tuple[int, int], np.ndarray]  # (city, category) -> merchants; city -1 for online
    customers_by_city: list[np.ndarray]
    age: np.ndarray  # years at the start date
    device_base: np.ndarray  # 48-bit id of the first usual device; later ones derive from it
    second_device_base: np.ndarray  # a laptop or tablet; 0 for customers with one device
    device_change_customer: np.ndarray  # one entry per device change (new phone), sorted by day
    device_change_day: np.ndarray
    trip_customer: np.ndarray  # one entry per trip: who, first and last day, which city
    trip_start: np.ndarray
    trip_end: np.ndarray
    trip_city: np.ndarray


def build_population(config: SimulationConfig) -> Population:
    rng = np.random.default_rng([config.seed, 1])
    n = config.n_customers
    city_weights = np.array([c[6] for c in CITIES]) / sum(c[6] for c in CITIES)
    city = rng.choice(len(CITIES), size=n, p=city_weights)
    home_lat = np.array([CITIES[c][1] for c in city]) + rng.normal(0, 0.08, n)
    home_lon = np.array([CITIES[c][2] for c in city]) + rng.normal(0, 0.08, n)

    first = rng.integers(len(FIRST_NAMES), size=n)
    middle = rng.integers(len(SURNAMES), size=n)
    last = rng.integers(len(SURNAMES), size=n)
    names = [f"{FIRST_NAMES[a]} {SURNAMES[b]} {SURNAMES[c]}" for a, b, c in zip(first, middle, last, strict=True)]
    email_suffix = rng.integers(1, 1000, size=n)
    domains = rng.integers(len(EMAIL_DOMAINS), size=n)
    emails = [
        f"{_ascii(FIRST_NAMES[a])}.{_ascii(SURNAMES[c])}{s}@{EMAIL_DOMAINS[d]}"
        for a, c, s, d in zip(first, last, email_suffix, domains, strict=True)
    ]

    cpf_body = rng.integers(0, 10, size=(n, 9))
    cpfs = []
    for body in cpf_body.tolist():
        if len(set(body)) == 1:
            body[0] = (body[0] + 1) % 10
        d1, d2 = cpf_check_digits(body)
        s = "".join(map(str, body))
        cpfs.append(f"{s[:3]}.{s[3:6]}.{s[6:9]}-{d1}{d2}")

    phone_digits = rng.integers(0, 10, size=(n, 8))
    phones = [f"+55 {CITIES[c][5]} 9{''.join(map(str, p[:4]))}-{''.join(map(str, p[4:]))}"
              for c, p in zip(city, phone_digits.tolist(), strict=True)]

    card_prefix = rng.integers(len(CARD_PREFIXES), size=n)
    card_body = rng.integers(0, 10, size=(n, 9))
    cards = []
    for p, body in zip(card_prefix, card_body.tolist(), strict=True):
        partial = CARD_PREFIXES[p] + "".join(map(str, body))
        cards.append(partial + str(luhn_check_digit(partial)))

    ages = np.clip(rng.gamma(6.0, 7.0, size=n) + 16, 18, 92)
    birth = [config.start_date - timedelta(days=int(a * 365.25)) for a in ages]
    birth_dates = [b.isoformat() for b in birth]
    cep_low = np.array([CITIES[c][3] for c in city])
    cep_high = np.array([CITIES[c][4] for c in city])
    cep_prefix = rng.integers(cep_low, cep_high + 1)
    cep_suffix = rng.integers(0, 1000, size=n)
    ceps = [f"{p:05d}-{s:03d}" for p, s in zip(cep_prefix, cep_suffix, strict=True)]
    device_base = rng.integers(1, 2**48, size=n)
    devices = [_device_name(int(v)) for v in device_base]
    activity = rng.gamma(2.0, 1.0, size=n)
    activity /= activity.sum()
    wealth = rng.lognormal(0.0, 0.35, size=n)

    m = config.n_merchants
    category_weights = np.array([c[1] for c in CATEGORIES]) / sum(c[1] for c in CATEGORIES)
    physical = [i for i, c in enumerate(CATEGORIES) if c[4] == CARD_PRESENT]
    online = [i for i, c in enumerate(CATEGORIES) if c[4] == ONLINE]
    # one merchant per (city, physical category) and per online category first, so no pool is empty
    seeded = [(ci, k) for ci in range(len(CITIES)) for k in physical] + [(0, k) for k in online]
    extra = max(0, m - len(seeded))
    merchant_city = np.concatenate([[s[0] for s in seeded], rng.choice(len(CITIES), extra, p=city_weights)])
    merchant_category = np.concatenate(
        [[s[1] for s in seeded], rng.choice(len(CATEGORIES), extra, p=category_weights)]
    ).astype(int)
    merchant_city = merchant_city.astype(int)
    merchant_lat = np.array([CITIES[c][1] for c in merchant_city]) + rng.normal(0, 0.1, len(merchant_city))
    merchant_lon = np.array([CITIES[c][2] for c in merchant_city]) + rng.normal(0, 0.1, len(merchant_city))
    merchant_ids = [f"M{i:06d}" for i in range(len(merchant_city))]
    pools: dict[tuple[int, int], np.ndarray] = {}
    for k in range(len(CATEGORIES)):
        in_category = merchant_category == k
        if CATEGORIES[k][4] == ONLINE:
            pools[(-1, k)] = np.flatnonzero(in_category)
        else:
            for ci in range(len(CITIES)):
                pools[(ci, k)] = np.flatnonzero(in_category & (merchant_city == ci))
    customers_by_city = [np.flatnonzero(city == ci) for ci in range(len(CITIES))]

    # habits over time, drawn once for the whole horizon so that any day can be simulated on its own
    habits = np.random.default_rng([config.seed, 4])
    second_device_base = np.where(habits.random(n) < SECOND_DEVICE_SHARE, habits.integers(1, 2**48, size=n), 0)
    changes = habits.poisson(config.days / DEVICE_CHANGE_EVERY_DAYS, size=n)
    device_change_customer = np.repeat(np.arange(n), changes)
    device_change_day = habits.integers(0, config.days, size=len(device_change_customer))
    order = np.argsort(device_change_day, kind="stable")
    trip_rate = habits.gamma(TRIP_RATE_SHAPE, TRIP_EVERY_DAYS_MEAN ** -1 / TRIP_RATE_SHAPE, size=n)
    window = config.days + TRIP_MAX_DAYS  # trips that began before day 0 may still be under way
    trips = habits.poisson(trip_rate * window)
    trip_customer = np.repeat(np.arange(n), trips)
    trip_start = habits.integers(-TRIP_MAX_DAYS, config.days, size=len(trip_customer))
    trip_length = np.minimum(habits.geometric(1.0 / TRIP_DAYS_MEAN, size=len(trip_customer)), TRIP_MAX_DAYS)
    trip_city = np.array([_far_city(habits, int(city[c])) for c in trip_customer.tolist()], dtype=int)
    return Population(
        names, cpfs, emails, phones, cards, birth_dates, ceps, devices, city, home_lat, home_lon,
        activity, wealth, merchant_ids, merchant_category, merchant_city, merchant_lat, merchant_lon,
        pools, customers_by_city, ages, device_base, second_device_base,
        device_change_customer[order], device_change_day[order],
        trip_customer, trip_start, trip_start + trip_length - 1, trip_city,
    )


# -- drift -----------------------------------------------------------------------------------------


def _approach(day: int, tau_days: float) -> float:
    """0 on day 0, rising to 1: a gradual change that is small from one day to the next."""
    return 1.0 - math.exp(-day / tau_days)


def category_weights_on(day: int) -> np.ndarray:
    """Shares of legitimate spending per category on `day`: online spending grows relative to
    card-present spending (by up to `ONLINE_GROWTH`, a time constant of `ONLINE_GROWTH_TAU_DAYS`)."""
    growth = 1.0 + ONLINE_GROWTH * _approach(day, ONLINE_GROWTH_TAU_DAYS)
    weights = np.array([share * growth if channel == ONLINE else share for _, share, _, _, channel in CATEGORIES])
    return weights / weights.sum()


def fraud_mix_on(day: int) -> np.ndarray:
    """Probability of each fraud scenario (card testing, takeover, cloning, friendly) for an incident
    on `day`: fraudsters move from card cloning towards account takeover and friendly fraud."""
    mix = FRAUD_MIX_START + (FRAUD_MIX_END - FRAUD_MIX_START) * _approach(day, FRAUD_MIX_TAU_DAYS)
    return mix / mix.sum()


def amount_factor_on(day: int) -> float:
    """Prices inflate slowly (`INFLATION_PER_DAY`), for legitimate and fraudulent amounts alike."""
    return (1.0 + INFLATION_PER_DAY) ** day


# -- transactions ----------------------------------------------------------------------------------


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=float)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 6371.0 * 2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _device_name(value: int) -> str:
    return f"dev-{value % 2**48:012x}"


def _device_of(base: int, generation: int) -> str:
    """The device a customer uses after `generation` changes (generation 0 is the first one)."""
    return _device_name(base + generation * 0x9E3779B97F4A7C15)


def _far_city(rng: np.random.Generator, home_city: int) -> int:
    choice = int(rng.integers(len(CITIES) - 1))
    return choice + (choice >= home_city)


def _new_device(rng: np.random.Generator) -> str:
    return _device_name(int(rng.integers(1, 2**48)))


@dataclass
class DayState:
    """Where each customer is and which device they carry on one day, and that day's drifted habits."""

    day: int
    city: np.ndarray  # home city, or the city of a trip under way
    lat: np.ndarray  # where the customer is (their home, or a hotel in the trip's city)
    lon: np.ndarray
    device_generation: np.ndarray
    category_weights: np.ndarray
    amount_factor: float
    fraud_mix: np.ndarray

    def usual_device(self, pop: Population, customer: int) -> str:
        return _device_of(int(pop.device_base[customer]), int(self.device_generation[customer]))


def day_state(config: SimulationConfig, pop: Population, day: int) -> DayState:
    rng = np.random.default_rng([config.seed, 5, day])
    city = pop.city.copy()
    lat, lon = pop.home_lat.copy(), pop.home_lon.copy()
    away = np.flatnonzero((pop.trip_start <= day) & (day <= pop.trip_end))
    travellers, trip_city = pop.trip_customer[away], pop.trip_city[away]
    city[travellers] = trip_city
    lat[travellers] = np.array([CITIES[c][1] for c in trip_city]) + rng.normal(0, 0.08, len(away))
    lon[travellers] = np.array([CITIES[c][2] for c in trip_city]) + rng.normal(0, 0.08, len(away))
    changed = pop.device_change_customer[: int(np.searchsorted(pop.device_change_day, day, side="right"))]
    generation = np.bincount(changed, minlength=len(pop.city))
    return DayState(day, city, lat, lon, generation, category_weights_on(day), amount_factor_on(day),
                    fraud_mix_on(day))


@dataclass
class Batch:
    """Transactions as columns (one entry per transaction)."""

    customer: np.ndarray
    second: np.ndarray  # seconds since the start of the day
    merchant: np.ndarray
    amount: np.ndarray
    device: list[str]
    lat: np.ndarray  # where the transaction happened (merchant, or the device for online purchases)
    lon: np.ndarray
    channel: np.ndarray
    fraud: np.ndarray
    scenario: np.ndarray
    label_delay: np.ndarray  # seconds from the transaction until its fraud label is known; NaN if legitimate

    _ARRAYS = ("customer", "second", "merchant", "amount", "lat", "lon", "channel", "fraud", "scenario",
               "label_delay")

    def __len__(self) -> int:
        return len(self.customer)

    def take(self, index: np.ndarray) -> Batch:
        taken = {name: getattr(self, name)[index] for name in self._ARRAYS}
        return Batch(**taken, device=[self.device[i] for i in index])

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        joined = {name: np.concatenate([getattr(b, name) for b in batches]) for name in Batch._ARRAYS}
        return Batch(**joined, device=[d for b in batches for d in b.device])


def _amounts(rng: np.random.Generator, category: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    median = np.array([CATEGORIES[k][2] for k in category])
    sigma = np.array([CATEGORIES[k][3] for k in category])
    return np.maximum(1.0, np.round(median * scale * rng.lognormal(0.0, sigma), 2))


def _pick_merchants(rng: np.random.Generator, pop: Population, city: np.ndarray, category: np.ndarray) -> np.ndarray:
    merchant = np.empty(len(city), dtype=int)
    pool_city = np.where(np.array([CATEGORIES[k][4] == ONLINE for k in category], dtype=bool), -1, city)
    for key in set(zip(pool_city.tolist(), category.tolist(), strict=True)):
        mask = (pool_city == key[0]) & (category == key[1])
        pool = pop.pools[key]
        merchant[mask] = pool[rng.integers(len(pool), size=int(mask.sum()))]
    return merchant


def _merchant(rng: np.random.Generator, pop: Population, city: int, category: int) -> int:
    pool = pop.pools[(-1 if CATEGORIES[category][4] == ONLINE else city, category)]
    return int(pool[rng.integers(len(pool))])


def legitimate(rng: np.random.Generator, pop: Population, state: DayState, n: int, seconds: np.ndarray) -> Batch:
    """Everyday spending where the customer is that day (home, or a trip), online from the devices they
    own (a new phone now and then, a second device, sometimes a borrowed or fresh browser)."""
    customer = rng.choice(len(pop.activity), size=n, p=pop.activity)
    category = rng.choice(len(CATEGORIES), size=n, p=state.category_weights)
    merchant = _pick_merchants(rng, pop, state.city[customer], category)
    channel = np.array([CATEGORIES[k][4] for k in category], dtype=int)
    online = channel == ONLINE
    lat = np.where(online, state.lat[customer] + rng.normal(0, 0.03, n), pop.merchant_lat[merchant])
    lon = np.where(online, state.lon[customer] + rng.normal(0, 0.03, n), pop.merchant_lon[merchant])
    draw = rng.random(n)
    second_base = pop.second_device_base[customer]
    generation = state.device_generation[customer]
    device = []
    for o, u, c, g, s in zip(online.tolist(), draw.tolist(), customer.tolist(), generation.tolist(),
                             second_base.tolist(), strict=True):
        if not o:
            device.append("")
        elif u < ONE_OFF_DEVICE_SHARE:
            device.append(_new_device(rng))
        elif s and u < ONE_OFF_DEVICE_SHARE + SECOND_DEVICE_USE:
            device.append(_device_name(s))
        else:
            device.append(_device_of(int(pop.device_base[c]), g))
    amount = _amounts(rng, category, pop.wealth[customer] * state.amount_factor)
    return Batch(customer, seconds, merchant, amount, device, lat, lon, channel,
                 np.zeros(n, dtype=int), np.zeros(n, dtype=int), np.full(n, np.nan))


def _victim(rng: np.random.Generator, pop: Population, weight: np.ndarray | None = None) -> int:
    """A cardholder drawn like a payer (active cards are the ones that get used, and abused)."""
    p = pop.activity if weight is None else pop.activity * weight
    return int(rng.choice(len(p), p=p / p.sum()))


def _hour_second(rng: np.random.Generator) -> float:
    """A time of day with the legitimate daily cycle."""
    return float(rng.choice(24, p=HOURLY / HOURLY.sum()) * 3600 + rng.uniform(0, 3600))


def _online_location(rng: np.random.Generator, pop: Population, victim: int, far: float) -> tuple[float, float]:
    """A fraudster's apparent location: another city with probability `far`, else a proxy in the
    cardholder's home city."""
    home = int(pop.city[victim])
    where = _far_city(rng, home) if rng.random() < far else home
    return CITIES[where][1] + float(rng.normal(0, 0.08)), CITIES[where][2] + float(rng.normal(0, 0.08))


def _label_delay(rng: np.random.Generator, scenario: int) -> float:
    """Seconds until the incident is labelled: a log-normal chargeback delay per scenario, clipped to
    an hour .. `LABEL_DELAY_MAX_DAYS` days (card testing is noticed soonest, friendly fraud latest)."""
    median_days, sigma = LABEL_DELAY_DAYS[scenario]
    days = float(np.clip(rng.lognormal(math.log(median_days), sigma), 1 / 24, LABEL_DELAY_MAX_DAYS))
    return days * DAY_SECONDS


def _incident(rng: np.random.Generator, pop: Population, state: DayState, scenario: int) -> Batch:
    """One fraud incident: a few related transactions, in time order, within one day."""
    rows: list[tuple] = []  # customer, second, merchant, amount, device, lat, lon, channel, fraud
    scale = state.amount_factor

    def online_row(victim: int, t: float, category: int, amount: float, device: str, where: tuple) -> None:
        rows.append((victim, t, _merchant(rng, pop, 0, category), round(amount, 2), device, *where, ONLINE, 1))

    def card_present_row(victim: int, t: float, city: int, category: int, amount: float, fraud: int) -> None:
        m = _merchant(rng, pop, city, category)
        rows.append((victim, t, m, round(amount, 2), "", float(pop.merchant_lat[m]), float(pop.merchant_lon[m]),
                     CARD_PRESENT, fraud))

    def legit_amount(victim: int, category: int) -> float:
        return float(_amounts(rng, np.array([category]), pop.wealth[victim] * scale)[0])

    if scenario == CARD_TESTING:  # probe the card with small online purchases, then maybe cash it in
        victim = _victim(rng, pop)
        device, where = _new_device(rng), _online_location(rng, pop, victim, far=0.5)
        t = float(rng.uniform(0, DAY_SECONDS - 3 * 3600))
        for _ in range(int(rng.integers(2, 6))):
            t += float(rng.uniform(30, 1800))
            k = _CATEGORY[str(rng.choice(["digital_goods", "transport", "online_retail"], p=[0.5, 0.3, 0.2]))]
            online_row(victim, t, k, math.exp(rng.uniform(math.log(1.0), math.log(30.0))) * scale, device, where)
        if rng.random() < 0.6:
            t += float(rng.uniform(300, 3 * 3600))
            k = _CATEGORY["online_retail"]
            online_row(victim, t, k, legit_amount(victim, k) * float(rng.lognormal(math.log(2.5), 0.5)),
                       device, where)
    elif scenario == ACCOUNT_TAKEOVER:  # phished credentials or a remote-access trojan on the victim's phone
        victim = _victim(rng, pop, np.where(pop.age >= 60, 3.0, np.where(pop.age >= 45, 1.5, 1.0)))
        if rng.random() < ACCOUNT_TAKEOVER_OWN_DEVICE:
            device = state.usual_device(pop, victim)
            where = (float(state.lat[victim] + rng.normal(0, 0.03)), float(state.lon[victim] + rng.normal(0, 0.03)))
        else:
            device, where = _new_device(rng), _online_location(rng, pop, victim, far=0.4)
        t = float(rng.uniform(0, 5 * 3600)) if rng.random() < 0.35 else _hour_second(rng)
        t = min(t, DAY_SECONDS - 4 * 3600.0)
        for _ in range(int(rng.integers(1, 5))):
            t += float(rng.uniform(300, 3600))
            k = _CATEGORY[str(rng.choice(["online_retail", "digital_goods", "transport"], p=[0.6, 0.3, 0.1]))]
            online_row(victim, t, k, legit_amount(victim, k) * float(rng.lognormal(math.log(3.0), 0.6)), device,
                       where)
    elif scenario == COMPROMISED_MERCHANT:  # cards skimmed at a breached merchant, cloned, used hours later
        physical = [k for k, c in enumerate(CATEGORIES) if c[4] == CARD_PRESENT]
        breached_city = int(rng.choice(len(CITIES), p=np.array([c[6] for c in CITIES]) / sum(c[6] for c in CITIES)))
        k = int(rng.choice(physical))
        breached = _merchant(rng, pop, breached_city, k)
        locals_ = pop.customers_by_city[breached_city]
        candidates = locals_ if len(locals_) else np.arange(len(pop.city))
        p = pop.activity[candidates] / pop.activity[candidates].sum()
        spend = np.array([CATEGORIES[j][1] * CLONED_CARD_CATEGORY_BIAS.get(CATEGORIES[j][0], 1.0) for j in physical])
        for victim in rng.choice(candidates, size=int(rng.integers(2, 6)), p=p).tolist():
            t = float(rng.uniform(6 * 3600, 12 * 3600))
            rows.append((victim, t, breached, legit_amount(victim, k), "", float(pop.merchant_lat[breached]),
                         float(pop.merchant_lon[breached]), CARD_PRESENT, 0))  # the skimming: legitimate
            fraud_city = _far_city(rng, breached_city) if rng.random() < CLONED_CARD_FAR else int(pop.city[victim])
            for _ in range(int(rng.integers(1, 4))):
                t += float(rng.uniform(1800, 3 * 3600))
                kk = int(rng.choice(physical, p=spend / spend.sum()))
                amount = legit_amount(victim, kk) * float(rng.lognormal(math.log(2.0), 0.4))
                card_present_row(victim, t, fraud_city, kk, amount, 1)
    else:  # friendly fraud: someone close to the cardholder (or the cardholder disputing), at home
        victim = _victim(rng, pop)
        device = state.usual_device(pop, victim)
        t = _hour_second(rng)
        for _ in range(int(rng.integers(1, 4))):
            t += float(rng.uniform(600, 4 * 3600))
            k = int(rng.choice(len(CATEGORIES), p=state.category_weights))
            amount = legit_amount(victim, k) * float(rng.lognormal(math.log(1.5), 0.4))
            if CATEGORIES[k][4] == ONLINE:
                online_row(victim, t, k, amount, device, (float(pop.home_lat[victim] + rng.normal(0, 0.03)),
                                                          float(pop.home_lon[victim] + rng.normal(0, 0.03))))
            else:
                card_present_row(victim, t, int(pop.city[victim]), k, amount, 1)
    columns = list(zip(*rows, strict=True))
    customer = np.array(columns[0], dtype=int)
    fraud = np.array(columns[8], dtype=int)
    second = np.minimum(np.array(columns[1]), DAY_SECONDS - 1.0)
    labelled_at = np.full(len(rows), np.nan)
    for victim in np.unique(customer[fraud == 1]).tolist():  # each card is reported once, after its last fraud
        mine = (customer == victim) & (fraud == 1)
        labelled_at[mine] = second[mine].max() + _label_delay(rng, scenario)
    return Batch(
        customer, second, np.array(columns[2], dtype=int), np.array(columns[3]), list(columns[4]),
        np.array(columns[5]), np.array(columns[6]), np.array(columns[7], dtype=int), fraud,
        np.where(fraud == 1, scenario, 0), labelled_at - second,
    )


def fraud_incidents(rng: np.random.Generator, pop: Population, state: DayState, budget: int,
                    day_rows: int) -> Batch | None:
    """Incidents until `budget` fraudulent transactions exist (the last incident is cut to fit)."""
    batches: list[Batch] = []
    fraud_rows = total_rows = 0
    while fraud_rows < budget:
        scenario = int(rng.choice(FRAUD_SCENARIOS, p=state.fraud_mix))
        incident = _incident(rng, pop, state, scenario)
        keep = np.ones(len(incident), dtype=bool)
        cumulative_fraud = fraud_rows + np.cumsum(incident.fraud)
        keep &= cumulative_fraud <= budget
        keep &= total_rows + np.arange(1, len(incident) + 1) <= day_rows
        incident = incident.take(np.flatnonzero(keep))
        if not len(incident):
            break
        batches.append(incident)
        fraud_rows += int(incident.fraud.sum())
        total_rows += len(incident)
    return Batch.concat(batches) if batches else None


def simulate_day(
    config: SimulationConfig, pop: Population, day: int, rows: int
) -> Iterator[Batch]:
    """One day's transactions in time order, one chunk (an hour or less) at a time."""
    rng = np.random.default_rng([config.seed, 2, day])
    state = day_state(config, pop, day)
    budget = int(rng.binomial(rows, config.fraud_rate)) if rows else 0
    fraud = fraud_incidents(rng, pop, state, budget, rows)
    fraud_hour = (fraud.second // 3600).astype(int) if fraud is not None else np.array([], dtype=int)
    legit_rows = rows - (len(fraud) if fraud is not None else 0)
    per_hour = rng.multinomial(legit_rows, HOURLY / HOURLY.sum())
    for hour in range(24):
        remaining = int(per_hour[hour])
        pieces = max(1, math.ceil(remaining / config.max_chunk_rows))
        for piece in range(pieces):
            n = remaining // pieces + (piece < remaining % pieces)
            start = hour * 3600 + piece * 3600 / pieces
            seconds = np.floor(rng.uniform(start, start + 3600 / pieces, size=n))
            parts = [legitimate(rng, pop, state, n, seconds)]
            if fraud is not None:
                fraud_piece = ((fraud.second - hour * 3600) * pieces // 3600).astype(int)
                here = np.flatnonzero((fraud_hour == hour) & (fraud_piece == piece))
                if len(here):
                    part = fraud.take(here)
                    floored = np.floor(part.second)
                    part.label_delay = part.label_delay + (part.second - floored)  # the same label time
                    part.second = floored
                    parts.append(part)
            batch = Batch.concat(parts) if len(parts) > 1 else parts[0]
            order = np.argsort(batch.second, kind="stable")
            yield batch.take(order)


def _rows(batch: Batch, pop: Population, day: date, first_id: int) -> Iterator[list]:
    distance = haversine_km(pop.home_lat[batch.customer], pop.home_lon[batch.customer], batch.lat, batch.lon)
    midnight = datetime(day.year, day.month, day.day)
    for i, (c, s, m, amount, device, ch, f, sc, dist, delay) in enumerate(zip(
        batch.customer.tolist(), batch.second.tolist(), batch.merchant.tolist(), batch.amount.tolist(),
        batch.device, batch.channel.tolist(), batch.fraud.tolist(), batch.scenario.tolist(), distance.tolist(),
        batch.label_delay.tolist(), strict=True,
    )):
        yield [
            f"tx{first_id + i:010d}",
            (midnight + timedelta(seconds=int(s))).isoformat(),
            pop.names[c], pop.cpfs[c], pop.emails[c], pop.phones[c], pop.cards[c], pop.birth_dates[c], pop.ceps[c],
            device,
            pop.merchant_ids[m],
            CATEGORIES[pop.merchant_category[m]][0],
            f"{pop.merchant_lat[m]:.5f}",
            f"{pop.merchant_lon[m]:.5f}",
            CHANNELS[ch],
            f"{amount:.2f}",
            f"{dist:.2f}",
            f,
            SCENARIOS[sc],
            (midnight + timedelta(seconds=math.ceil(s + delay))).isoformat() if f else "",
        ]


def rows_per_day(config: SimulationConfig) -> np.ndarray:
    """Split the total over the days with the weekly cycle; sums to exactly `transactions`."""
    rng = np.random.default_rng([config.seed, 3])
    weights = np.array([WEEKLY[(config.start_date + timedelta(days=d)).weekday()] for d in range(config.days)])
    return rng.multinomial(config.transactions, weights / weights.sum())


def simulate(
    config: SimulationConfig, out_dir: Path, progress: bool | None = None, overwrite: bool = False
) -> list[SpanSummary]:
    """Write one CSV per day under `out_dir` plus a manifest; returns per-span counts."""
    out_dir = Path(out_dir)
    existing = sorted(out_dir.glob("span-*")) if out_dir.exists() else []
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds simulated spans ({existing[0].name} ...); "
            "choose an empty directory or pass --overwrite"
        )
    remove_spans_after(out_dir, config.days)  # --overwrite: never leave spans of an earlier, longer run behind
    pop = build_population(config)
    summaries: list[SpanSummary] = []
    next_id = 0
    show = config.transactions >= 100_000 if progress is None else progress
    with tqdm(total=config.transactions, unit="tx", disable=not show, desc="simulating") as bar:
        for day_index, rows in enumerate(rows_per_day(config).tolist()):
            day = config.start_date + timedelta(days=day_index)
            summary = SpanSummary(span=day_index + 1, date=day.isoformat())
            span_dir = out_dir / f"span-{summary.span:04d}"
            span_dir.mkdir(parents=True, exist_ok=True)
            partial = span_dir / (FILE_NAME + ".partial")
            with partial.open("w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream, lineterminator="\n")
                writer.writerow(COLUMNS)
                for batch in simulate_day(config, pop, day_index, rows):
                    writer.writerows(_rows(batch, pop, day, next_id))
                    next_id += len(batch)
                    summary.rows += len(batch)
                    summary.fraud_rows += int(batch.fraud.sum())
                    for code in batch.scenario[batch.fraud == 1].tolist():
                        name = SCENARIOS[code]
                        summary.fraud_by_scenario[name] = summary.fraud_by_scenario.get(name, 0) + 1
                    bar.update(len(batch))
            publish(partial, span_dir / FILE_NAME)  # complete or absent; untouched when its bytes are the same
            summaries.append(summary)
    _write_manifest(config, out_dir, summaries)
    return summaries


def _write_manifest(config: SimulationConfig, out_dir: Path, summaries: list[SpanSummary]) -> None:
    total = sum(s.rows for s in summaries)
    fraud = sum(s.fraud_rows for s in summaries)
    manifest = {
        "generator": "esteira fraud simulator",
        "config": {**asdict(config), "start_date": config.start_date.isoformat(),
                   "customers": config.n_customers, "merchants": config.n_merchants},
        "input_pattern": INPUT_PATTERN,
        "columns": COLUMNS,
        "personal_data_columns": PII_COLUMNS,
        "label": "is_fraud",
        "label_available_at": "label_available_at",  # when each fraud label became known; not a feature
        "transactions": total,
        "fraud_transactions": fraud,
        "fraud_rate": fraud / total if total else 0.0,
        "spans": [asdict(s) for s in summaries],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def fraud_main(argv: list[str]) -> int:
    """`esteira data fraud ...`: argv is what follows `esteira data fraud`."""
    parser = argparse.ArgumentParser(
        prog="esteira data fraud",
        description="Simulate card transactions with personal data and fraud; one CSV folder per day (span).",
    )
    parser.add_argument("--transactions", type=int, required=True, help="total number of transactions")
    parser.add_argument("--days", type=int, required=True, help="number of days; one span folder per day")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--fraud-rate", type=float, default=DEFAULT_FRAUD_RATE,
                        help=f"share of fraudulent transactions (default {DEFAULT_FRAUD_RATE})")
    parser.add_argument("--customers", type=int, default=None, help="default: transactions/20, 50..50000")
    parser.add_argument("--start-date", type=date.fromisoformat, default=date(2024, 1, 1),
                        help="date of span 1, YYYY-MM-DD (default 2024-01-01)")
    parser.add_argument("--overwrite", action="store_true", help="replace spans already in --out")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: on from 100000 transactions)")
    args = parser.parse_args(argv)
    try:
        config = SimulationConfig(
            transactions=args.transactions, days=args.days, seed=args.seed, fraud_rate=args.fraud_rate,
            customers=args.customers, start_date=args.start_date,
        )
        summaries = simulate(config, args.out, progress=args.progress, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as error:
        print(f"esteira data fraud: error: {error}", file=sys.stderr)
        return 2
    total = sum(s.rows for s in summaries)
    fraud = sum(s.fraud_rows for s in summaries)
    print(
        f"wrote {total} transactions ({fraud} fraudulent, {fraud / total:.2%}) in {len(summaries)} spans "
        f"to {args.out}/span-NNNN/{FILE_NAME}; ExampleGen pattern: {INPUT_PATTERN}"
    )
    return 0

