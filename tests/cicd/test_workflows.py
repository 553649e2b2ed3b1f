"""The GitHub workflows pass actionlint, and every step is either a pinned action or a `make` target
that exists and that a test runs, so the workflows do what was tested."""
from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
MAKE_STEP = re.compile(r'^make (?P<target>[a-z0-9-]+)(?: [A-Z_]+=(?:"[^"]*"|\S+))*$')
# Each target the workflows call, and the test file that runs it.
RUN_BY = {
    "k8s-validate": "tests/k8s/test_validate.py",
    "deploy-pin": "tests/k8s/test_deploy_steps.py",
    "canary-start": "tests/k8s/test_deploy_steps.py",
    "canary-promote": "tests/k8s/test_deploy_steps.py",
    "canary-rollback": "tests/k8s/test_deploy_steps.py",
    "canary-check": "tests/k8s/test_canary_check.py",
    "kubeconfig": "tests/cicd/test_workflows.py",
    "registry-login": "tests/cicd/test_workflows.py",
    "model-gate": "tests/e2e/test_fraud_pipeline.py",
}
# Targets no test can run here, and why (README, "CI/CD").
NOT_RUN_HERE = {
    "ci": "is .ci/run, the test suite itself",
    "demo": "runs the pipeline, which the e2e tests run with fewer steps",
    "deploy-images": "pushes to a registry; the images are built and run by tests/deploy",
    "deploy-apply": "needs a Kubernetes cluster; what it applies is what k8s-validate checks",
}


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-s", "-o", "install", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def workflows() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(WORKFLOWS.glob("*.yml"))}


def steps():
    for name, workflow in workflows().items():
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                yield name, step


def test_actionlint_passes_the_three_workflows_and_rejects_a_broken_one(tmp_path: Path) -> None:
    assert set(workflows()) == {"ci.yml", "model-gate.yml", "deploy.yml"}
    for path in WORKFLOWS.glob("*.yml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.yml").write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                                         "      - run: make test ${{ github.no_such_property }}\n")
    result = make("lint-workflows", f"WORKFLOW_FILES={tmp_path}/*.yml")
    assert result.returncode != 0
    assert "Checking 4 workflow file(s)" in result.stdout
    problems = [line for line in result.stdout.splitlines() if re.match(r"^\S+\.yml:\d+:\d+ ", line)]
    assert problems and all(re.match(r"^\S*/broken\.yml:6:", line) for line in problems), problems
    assert 'property "no_such_property" is not defined' in problems[0]


def test_every_step_is_a_pinned_action_or_a_make_target_a_test_runs() -> None:
    makefile = (REPO / "Makefile").read_text()
    called = set()
    for workflow, step in steps():
        if "uses" in step:
            assert re.fullmatch(r"actions/[\w-]+@v\d+", step["uses"]), f"{workflow}: {step['uses']}"
            continue
        match = MAKE_STEP.match(step["run"].strip())
        assert match, f"{workflow}: step {step.get('name')!r} runs {step['run']!r}, not a make target"
        target = match["target"]
        assert re.search(rf"^{target}:", makefile, re.M), f"{workflow}: no make target {target}"
        called.add(target)
    assert called == set(RUN_BY) | set(NOT_RUN_HERE)
    for target, test_file in RUN_BY.items():
        assert target in (REPO / test_file).read_text(), f"{test_file} does not run {target}"
    assert "make test" in (REPO / ".ci/run").read_text()


def test_model_gate_runs_on_data_and_config_changes_and_attaches_the_reports() -> None:
    gate = workflows()["model-gate.yml"]
    triggers = gate[True] if True in gate else gate["on"]  # YAML 1.1 reads the key `on` as true
    assert "configs/**" in triggers["pull_request"]["paths"] and "pipeline/datasets/**" in triggers["push"]["paths"]
    job_steps = gate["jobs"]["gate"]["steps"]
    upload = next(step for step in job_steps if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "outputs/gate/"
    assert any("make model-gate" in step.get("run", "") and "GATE_OUT=outputs/gate" in step["run"]
               for step in job_steps)


def test_deploy_promotes_or_rolls_back_on_the_canary_check() -> None:
    job_steps = workflows()["deploy.yml"]["jobs"]["deploy"]["steps"]
    runs = [step.get("run", "").split()[1] if step.get("run") else step["uses"] for step in job_steps]
    order = [runs.index(target) for target in ("deploy-images", "deploy-pin", "k8s-validate", "deploy-apply",
                                               "canary-start", "canary-check", "canary-promote", "canary-rollback")]
    assert order == sorted(order)
    watch = next(step for step in job_steps if step.get("id") == "watch")
    assert watch["run"].startswith("make canary-check") and watch["continue-on-error"] is True
    by_target = {step["run"].split()[1]: step for step in job_steps if step.get("run")}
    assert by_target["canary-promote"]["if"] == "steps.watch.outcome == 'success'"
    assert by_target["canary-rollback"]["if"] == "steps.watch.outcome != 'success'"
    assert job_steps[-1]["if"] == "steps.watch.outcome != 'success'"  # a rolled-back deploy ends red


def test_kubeconfig_is_written_from_the_secret_and_login_names_missing_credentials(tmp_path: Path) -> None:
    target = tmp_path / "kube" / "config"
    written = make("kubeconfig", f"KUBECONFIG_FILE={target}",
                   env={"KUBECONFIG_DATA": base64.b64encode(b"apiVersion: v1\nkind: Config\n").decode()})
    assert written.returncode == 0, written.stderr
    assert target.read_text() == "apiVersion: v1\nkind: Config\n" and (target.stat().st_mode & 0o777) == 0o600
    missing = make("kubeconfig", f"KUBECONFIG_FILE={target}", env={"KUBECONFIG_DATA": ""})
    assert missing.returncode != 0 and "set KUBECONFIG_DATA" in missing.stderr
    login = make("registry-login", env={"REGISTRY_USER": "", "REGISTRY_PASSWORD": ""})
    assert login.returncode != 0 and "set REGISTRY_USER and REGISTRY_PASSWORD" in login.stderr
