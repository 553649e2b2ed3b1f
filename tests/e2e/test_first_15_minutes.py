"""The README's "first 15 minutes", replayed as a new user types it, in a fresh clone of this checkout.

`git clone` takes only committed files; the clone's `.venv` is a link to the environment running the tests
(so nothing is installed again) and `PYTHONPATH` makes the clone's own code the one that runs. The steps:
`make demo` twice, `make serve-demo` with `esteira predict` (REST and gRPC) and the README's curl (urllib),
Ctrl-C, `make stack`, traffic with late labels, `make dashboard`, `make console`, both pages in headless
Chromium (screenshots under the test's tmp_path, every panel holding data), `make stack-down`. The servers
take free loopback ports through the Makefile's own variables (REST_PORT, GRPC_PORT, STACK_ARGS,
CONSOLE_PORT), so the module runs beside the rest of the suite; whatever it started is stopped in teardown.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import httpx
import pytest

from observability.stack import free_port, wait_until
from tests.browser import headless_chromium

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODEL = "breast_cancer"
REQUEST = Path("docs/requests/breast_cancer.json")
# The files whose hash `make install` compares with .venv/.esteira-installed (the Makefile's INSTALL_INPUTS).
INSTALL_INPUTS = ("requirements.lock", "requirements-nodeps.txt", "pyproject.toml", "scripts/install_lock.py",
                  "scripts/elf_compat.py", "deploy/lock.py")
LOAD_SECONDS = 20.0  # a few 5 s scrapes of traffic, so every rate() panel has two samples


@dataclass
class Clone:
    root: Path
    env: dict[str, str]
    ports: dict[str, int]

    def make(self, *targets: str, timeout: float = 300) -> str:
        """`make TARGET` in the clone; its output (stdout and stderr), failing with its tail."""
        result = subprocess.run(["make", *targets], cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=timeout)
        assert result.returncode == 0, f"make {' '.join(targets)} exited {result.returncode}:\n{result.stdout[-4000:]}"
        return result.stdout

    def start(self, target: str, log: Path) -> subprocess.Popen:
        """`make TARGET` left running, as in its own terminal (its own session: Ctrl-C reaches all of it)."""
        with open(log, "wb") as sink:
            return subprocess.Popen(["make", target], cwd=self.root, env=self.env, stdout=sink,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def esteira(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([".venv/bin/esteira", *args], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=120)


def _interrupt(process: subprocess.Popen) -> int:
    """Ctrl-C in the process's terminal (SIGINT to its session), then SIGKILL if it has not ended in 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return process.returncode


def _venv() -> Path:
    prefix = Path(sys.prefix)
    if prefix == Path(sys.base_prefix) or not (prefix / "bin" / "esteira").exists():
        pytest.fail(f"the tests run outside this project's environment ({sys.executable}); run them with "
                    ".venv/bin/python -m pytest (make test does)")
    return prefix


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    root = tmp_path_factory.mktemp("first15") / "esteira"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(root)], check=True, timeout=120)
    venv = _venv()
    wanted = sha256(b"".join((root / name).read_bytes() for name in INSTALL_INPUTS)).hexdigest()
    stamp = venv / ".esteira-installed"
    if not stamp.exists() or stamp.read_text().strip() != wanted:
        pytest.fail(f"{venv} was not installed from the committed install inputs ({', '.join(INSTALL_INPUTS)}): "
                    "`make` in the clone would reinstall into it; commit them and run `make install`")
    (root / ".venv").symlink_to(venv)
    ports = {name: free_port() for name in ("rest", "grpc", "prometheus", "alertmanager", "mlflow", "console")}
    env = {key: value for key, value in os.environ.items()  # a new user's shell: no make, tracking or token state
           if not key.startswith(("MAKE", "MFLAGS", "ESTEIRA_")) and key != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(root), REST_PORT=str(ports["rest"]), GRPC_PORT=str(ports["grpc"]),
               CONSOLE_PORT=str(ports["console"]),
               STACK_ARGS=f"--prometheus-port={ports['prometheus']} --alertmanager-port={ports['alertmanager']} "
                          f"--mlflow-port={ports['mlflow']}")
    return Clone(root, env, ports)


# ---- 1. make demo, twice ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(clone: Clone) -> dict[str, str]:
    return {"first": clone.make("demo", timeout=1200), "again": clone.make("demo", timeout=900)}


def _pushed_version(clone: Clone, output: str) -> str:
    """The version `pushed: version N at <checkout>/outputs/breast_cancer/serving/N` names."""
    found = re.search(r"^pushed: version (\d+) at (\S+)$", output, re.MULTILINE)
    assert found, output[-3000:]
    assert Path(found.group(2)).resolve() == (clone.root / "outputs" / MODEL / "serving" / found.group(1)).resolve(), \
        found.group(0)
    return found.group(1)


def test_make_demo_blesses_and_publishes_a_version_and_again_publishes_nothing(clone: Clone, demo: dict) -> None:
    first = demo["first"]
    assert re.search(r"^esteira: \[ 1/\d+\] CsvExampleGen started", first, re.MULTILINE), first[-3000:]
    assert re.search(r"^blessed: yes$", first, re.MULTILINE), first[-3000:]
    version = _pushed_version(clone, first)
    assert re.search(r"^pushed: no — identical to the served version", demo["again"], re.MULTILINE), \
        demo["again"][-3000:]
    served = sorted(p.name for p in (clone.root / "outputs" / MODEL / "serving").iterdir() if p.name.isdigit())
    assert served == [version]


# ---- 2-3. make serve-demo, esteira predict, curl ------------------------------------------------------

@dataclass
class Served:
    version: str
    status: dict
    rest: subprocess.CompletedProcess
    grpc: subprocess.CompletedProcess
    curl: tuple[int, dict]
    misspelled: tuple[int, dict]
    returncode: int
    log: str


@pytest.fixture(scope="module")
def served(clone: Clone, demo: dict, tmp_path_factory: pytest.TempPathFactory) -> Served:
    """Step 2 and 3 with the server up, then Ctrl-C (step 4 starts the stack on the same ports)."""
    version = _pushed_version(clone, demo["first"])
    log = tmp_path_factory.mktemp("serve") / "serve-demo.log"
    server = clone.start("serve-demo", log)
    rest = f"http://127.0.0.1:{clone.ports['rest']}"
    try:
        wait_until(lambda: any(v["state"] == "AVAILABLE" for v in httpx.get(
            f"{rest}/v1/models/{MODEL}", timeout=2).json().get("model_version_status", [])),
            240, "make serve-demo", server, log)
        status = httpx.get(f"{rest}/v1/models/{MODEL}", timeout=10).json()
        by_rest = clone.esteira("predict", "--model", MODEL, "--input", str(REQUEST), "--server", rest)
        by_grpc = clone.esteira("predict", "--model", MODEL, "--input", str(REQUEST),
                                "--server", f"grpc://127.0.0.1:{clone.ports['grpc']}")
        body = (clone.root / REQUEST).read_bytes()
        curl = _post(f"{rest}/v1/models/{MODEL}:predict", body)
        misspelled = json.loads(body)
        misspelled["instances"][0]["mean_radiuss"] = misspelled["instances"][0].pop("mean_radius")
        wrong = _post(f"{rest}/v1/models/{MODEL}:predict", json.dumps(misspelled).encode())
    finally:
        code = _interrupt(server)
    return Served(version, status, by_rest, by_grpc, curl, wrong, code, log.read_text(errors="replace"))


def _post(url: str, body: bytes) -> tuple[int, dict]:
    """What `curl -s -d @file URL` sends (a form-encoded POST of the file's bytes): status and JSON answer."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _malignancy(predictions: object) -> float:
    assert isinstance(predictions, list) and len(predictions) == 1 and len(predictions[0]) == 1, predictions
    return float(predictions[0][0])


def test_make_serve_demo_serves_the_version_available(served: Served) -> None:
    assert [(v["version"], v["state"]) for v in served.status["model_version_status"]] == \
        [(served.version, "AVAILABLE")]


def test_esteira_predict_over_rest_and_grpc_and_curl_answer_the_same_malignant_score(served: Served) -> None:
    for result in (served.rest, served.grpc):
        assert result.returncode == 0, result.stderr[-2000:]
    scores = [_malignancy(json.loads(served.rest.stdout)["predictions"])]
    over_grpc = json.loads(served.grpc.stdout)  # the PredictResponse: its version and its outputs by name
    assert str(over_grpc["model_version"]) == served.version, over_grpc
    scores.append(_malignancy(over_grpc["outputs"]["probability"]))
    assert served.curl[0] == 200, served.curl
    scores.append(_malignancy(served.curl[1]["predictions"]))
    assert all(0.9 <= score <= 1.0 for score in scores), scores  # README: [[0.9...]], scikit-learn's case 0
    assert max(scores) - min(scores) < 1e-5, scores


def test_a_misspelled_feature_is_answered_400_naming_it_and_the_nearest_name(served: Served) -> None:
    code, body = served.misspelled
    assert code == 400 and "mean_radiuss" in body["error"] and "did you mean mean_radius" in body["error"], body


def test_ctrl_c_stops_serve_demo(served: Served) -> None:
    assert served.returncode is not None and served.returncode != -signal.SIGKILL, served.log[-2000:]


# ---- 4-5. make stack, traffic, make dashboard, make console, make stack-down ----------------------------

@dataclass
class Stack:
    printed: str
    console_printed: str
    console_url: str
    tokens: dict[str, str]
    dashboard_printed: str
    request_id: str


def _url(printed: str, name: str) -> str:
    line = next((line for line in printed.splitlines() if line.strip().startswith(name)), "")
    found = re.search(r"http://127\.0\.0\.1:\d+\S*", line)
    assert found, f"no {name} URL in:\n{printed}"
    return found.group(0)


def _traffic(rest: str, body: dict, seconds: float) -> str:
    """The README's case and its 29 neighbours varied, with late labels (every third one wrong) and a
    misspelled request in ten: what the dashboard's panels draw. Returns one answered request id."""
    import numpy as np

    rng = np.random.default_rng(15)
    case = body["instances"][0]
    request_id, index, deadline = "", 0, time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            index += 1
            rows = [{name: value * float(rng.uniform(0.6, 1.4)) for name, value in case.items()} for _ in range(4)]
            if index % 10 == 0:
                rows[0]["mean_radiuss"] = rows[0].pop("mean_radius")
            response = client.post(f"{rest}/v1/models/{MODEL}:predict",
                                   json={"signature_name": body["signature_name"], "instances": rows})
            if response.status_code == 200:
                request_id = response.headers["x-request-id"]
                labels = [{"request_id": request_id, "row": row, "label": int(score >= 0.5) ^ int(row == index % 3)}
                          for row, (score,) in enumerate(response.json()["predictions"])]
                assert client.post(f"{rest}/v1/models/{MODEL}/feedback", json={"feedback": labels}).status_code == 200
            time.sleep(0.1)
    assert request_id, "no prediction was answered"
    return request_id


def _panels_with_data(prometheus: str) -> tuple[int, list[str]]:
    from observability.static_page import PrometheusClient, Window, collect

    client = PrometheusClient(prometheus)
    try:
        panels = [p for row in collect(client, Window.ending(time.time(), 3600)) for p in row.panels]
    finally:
        client.close()
    return len(panels), [p.panel.title for p in panels if not p.has_data]


@pytest.fixture(scope="module")
def stack(clone: Clone, served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    console = None
    try:
        printed = clone.make("stack", timeout=600)
        body = json.loads((clone.root / REQUEST).read_text())
        request_id = _traffic(f"http://127.0.0.1:{clone.ports['rest']}", body, LOAD_SECONDS)
        prometheus = f"http://127.0.0.1:{clone.ports['prometheus']}"
        deadline = time.monotonic() + 90  # the recording rules and rate() windows need a few evaluations
        while (missing := _panels_with_data(prometheus)[1]) and time.monotonic() < deadline:
            time.sleep(5)
        assert not missing, f"dashboard panels without data after the traffic: {missing}"
        dashboard = clone.make("dashboard", timeout=120)
        log = tmp_path_factory.mktemp("console") / "console.log"
        console = clone.start("console", log)
        tokens: dict[str, str] = {}

        def signed_in_tokens() -> bool:
            tokens.update(re.findall(r"^\s+(approver|reviewer)\s+(\S+)\s", log.read_text(), re.MULTILINE))
            return len(tokens) == 2 and httpx.get(f"{_url(log.read_text(), 'esteira console')}login",
                                                  timeout=2).status_code == 200
        wait_until(signed_in_tokens, 120, "make console", console, log)
        text = log.read_text()
        yield Stack(printed, text, _url(text, "esteira console"), tokens, dashboard, request_id)
    finally:
        if console is not None:
            _interrupt(console)
        clone.make("stack-down", timeout=120)


def test_make_stack_serves_the_demo_version_and_prometheus_scrapes_it_up(clone: Clone, served: Served,
                                                                         stack: Stack) -> None:
    status = httpx.get(_url(stack.printed, f"model {MODEL}"), timeout=10).json()["model_version_status"]
    assert [(v["version"], v["state"]) for v in status] == [(served.version, "AVAILABLE")]
    assert f"version {served.version} (stable and canary)" in stack.printed
    targets_page = httpx.get(_url(stack.printed, "Prometheus targets"), timeout=10)
    assert targets_page.status_code == 200
    targets = httpx.get(f"http://127.0.0.1:{clone.ports['prometheus']}/api/v1/targets", timeout=10).json()
    serving = [t for t in targets["data"]["activeTargets"] if t["labels"]["job"] == "esteira-serving"]
    assert [(t["scrapeUrl"].split("/")[2], t["health"]) for t in serving] == \
        [(f"127.0.0.1:{clone.ports['rest']}", "up")], serving


def test_mlflow_opens_on_the_run_that_registered_the_demo_version(served: Served, stack: Stack) -> None:
    runs_view = _url(stack.printed, "MLflow runs")
    server, _, fragment = runs_view.partition("/#/")
    experiment = re.fullmatch(r"experiments/(\d+)/runs", fragment)
    assert experiment, runs_view
    runs = httpx.post(f"{server}/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment.group(1)]},
                      timeout=30).json()["runs"]
    versions = httpx.get(f"{server}/api/2.0/mlflow/model-versions/search", params={"filter": f"name='{MODEL}'"},
                         timeout=30).json()["model_versions"]
    registered = [v for v in versions if {"key": "serving_version", "value": served.version} in v.get("tags", [])]
    assert len(registered) == 1 and registered[0]["run_id"] in {run["info"]["run_id"] for run in runs}, versions


def test_make_dashboard_draws_every_panel_with_data_in_chromium(clone: Clone, stack: Stack, tmp_path: Path) -> None:
    found = re.search(r"wrote (\S+) \((\d+) panels, (\d+) with data\)", stack.dashboard_printed)
    assert found and found.group(2) == found.group(3), stack.dashboard_printed
    page = clone.root / found.group(1)
    assert page == clone.root / "outputs" / "dashboard" / "index.html"
    browser = headless_chromium(Path(tempfile.mkdtemp(dir=tmp_path, prefix="chromium-")))
    try:
        browser.get(page.as_uri())
        panels = browser.find_elements("css selector", ".panel")
        drawn = browser.find_elements("css selector", ".panel.drawn canvas")
        without = [element.text.split("\n", 1)[0]
                   for element in browser.find_elements("css selector", ".panel.empty, .panel.failed")]
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        browser.save_screenshot(str(tmp_path / "dashboard.png"))
    finally:
        browser.quit()
    assert not errors, errors
    assert len(panels) == int(found.group(2)) and not without, without
    assert len(drawn) >= len(panels)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_make_console_prints_its_url_and_tokens_it_created_under_secrets(clone: Clone, stack: Stack) -> None:
    assert stack.console_url == f"http://127.0.0.1:{clone.ports['console']}/"
    assert {p.name for p in (clone.root / "secrets").iterdir()} == {"console-approvers.tokens",
                                                                     "console-reviewers.tokens"}
    for role, token in stack.tokens.items():
        assert token in (clone.root / "secrets" / f"console-{role}s.tokens").read_text()


def test_the_console_shows_the_version_its_metrics_reports_and_the_contest_queue(served: Served, stack: Stack,
                                                                                tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser = headless_chromium(Path(tempfile.mkdtemp(dir=tmp_path, prefix="chromium-")))
    browser.set_window_size(1400, 1600)
    url = stack.console_url.rstrip("/")
    seen: dict[str, object] = {}
    try:
        browser.get(f"{url}/login")
        browser.find_element("id", "token").send_keys(stack.tokens["reviewer"])
        browser.find_element("id", "sign-in").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_elements("css selector", "#versions tr[data-version]"))
        browser.save_screenshot(str(tmp_path / "console-versions.png"))
        row = browser.find_element("css selector", "#versions tr[data-version]")
        seen["row"] = row.text
        seen["row_auc"] = row.find_element("css selector", "[data-fact=auc]").text
        row.find_element("css selector", "a").click()
        WebDriverWait(browser, 60).until(lambda d: d.find_elements("css selector", "#slices"))
        WebDriverWait(browser, 30).until(lambda d: d.find_element("tag name", "body").get_attribute("data-charts"))
        browser.save_screenshot(str(tmp_path / "console-version.png"))
        seen["messages"] = [e.text for e in browser.find_elements("css selector", ".message")]
        seen["charts"] = len(browser.find_elements("css selector", ".chart[data-chart]"))
        seen["drawn"] = int(browser.find_element("tag name", "body").get_attribute("data-charts"))
        seen["drift"] = len(browser.find_elements("css selector", "#drift td[data-feature]"))
        seen["reports"] = [e.get_attribute("data-report")
                           for e in browser.find_elements("css selector", "[data-report]")]
        browser.get(f"{url}/contests?request_id={stack.request_id}")
        WebDriverWait(browser, 60).until(lambda d: d.find_elements("css selector", "#decision, [data-problem]"))
        browser.save_screenshot(str(tmp_path / "console-contest.png"))
        seen["decision_version"] = [e.text for e in browser.find_elements("css selector",
                                                                            "#decision [data-fact=version]")]
        seen["problems"] = [e.text for e in browser.find_elements("css selector", "[data-problem]")]
        seen["errors"] = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        browser.quit()
    assert f"(serving {served.version})" in str(seen["row"]) and float(str(seen["row_auc"])) >= 0.95, seen
    assert not seen["messages"], seen["messages"]  # every section of the version page holds data
    assert seen["charts"] and seen["drawn"] >= seen["charts"], seen
    assert seen["drift"] == 30 and "lgpd" in seen["reports"], seen
    assert seen["decision_version"] == [served.version] and not seen["problems"], seen
    assert not seen["errors"], seen["errors"]
    for shot in ("console-versions", "console-version", "console-contest"):
        assert (tmp_path / f"{shot}.png").stat().st_size > 10_000


def test_make_stack_down_stops_it_all(clone: Clone, stack: Stack) -> None:
    """Last in the module: stack-down here (teardown's second one finds nothing), then every port is free."""
    printed = clone.make("stack-down", timeout=120)
    stopped = re.search(r"^stack: stopped (.+)$", printed, re.MULTILINE)
    assert stopped and set(stopped.group(1).split(", ")) == {"server", "prometheus", "alertmanager", "mlflow"}, printed
    for name in ("rest", "grpc", "prometheus", "alertmanager", "mlflow"):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{clone.ports[name]}/", timeout=2)
