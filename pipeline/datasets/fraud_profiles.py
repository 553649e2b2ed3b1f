"""`esteira data fraud --profile NAME`: which transaction simulator writes the fraud data.

Why a dispatcher: both simulators write the same raw layout (span-NNNN/transactions.csv with
personal data, plus manifest.json), so one front door serves them; each keeps its own flags.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

# profile -> ("module:function", what it is); the function takes the remaining argv, returns an exit code
PROFILES: dict[str, tuple[str, str]] = {
    "esteira": ("pipeline.datasets.fraud_simulator:fraud_main",
                "Esteira's simulator: merchants, devices, channels and its own fraud scenarios (default)"),
    "handbook": ("pipeline.datasets.handbook_simulator:handbook_main",
                 "the Fraud Detection Handbook's simulator (customers, terminals, three fraud scenarios)"),
}
DEFAULT_PROFILE = "esteira"
PROG = "esteira data fraud"


def split_profile(argv: list[str]) -> tuple[str | None, list[str]]:
    """The value of --profile (None when absent) and argv without it; a missing value raises ValueError."""
    rest: list[str] = []
    profile: str | None = None
    items = iter(argv)
    for item in items:
        if item == "--profile":
            profile = next(items, None)
            if profile is None or profile.startswith("-"):
                raise ValueError(f"--profile needs a value: one of {', '.join(PROFILES)}")
        elif item.startswith("--profile="):
            profile = item.partition("=")[2]
        else:
            rest.append(item)
    return profile, rest


def _load(target: str) -> Callable[[list[str]], int]:
    import importlib

    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def fraud_main(argv: list[str]) -> int:
    """Dispatch to the chosen profile's simulator; an unknown profile is one line and exit code 2."""
    try:
        profile, rest = split_profile(argv)
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    if profile is not None and profile not in PROFILES:
        print(f"{PROG}: error: --profile {profile!r} is not a profile; use one of {', '.join(PROFILES)} "
              f"(default {DEFAULT_PROFILE})", file=sys.stderr)
        return 2
    if profile is None and ("-h" in rest or "--help" in rest):
        print(f"profiles (--profile NAME, then `{PROG} --profile NAME -h` for its flags):")
        for name, (_target, text) in PROFILES.items():
            print(f"  {name:9s} {text}")
        print()
    return _load(PROFILES[profile or DEFAULT_PROFILE][0])(rest)
