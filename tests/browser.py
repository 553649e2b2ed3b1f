"""Headless Debian Chromium driven by Selenium, as every browser test in the suite opens it."""
from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def headless_chromium(user_data_dir: Path):  # type: ignore[no-untyped-def]
    """A driver on Debian's chromium and chromedriver (no browser download); its console log is kept,
    so tests can fail on page errors."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument("--window-size=1400,2400")
    options.binary_location = shutil.which("chromium") or ""
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
