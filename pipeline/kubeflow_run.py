"""Submit the pipeline to Kubeflow Pipelines and follow it: compile, upload a version, run, watch tasks.

TFX 1.21's `tfx pipeline create --engine kubeflow` imports a module TFX removed, so this goes through
kfp's own client (`kfp.Client`, the package TFX's kfp extra pins) against the KFP v2beta1 API: the
KubeflowV2DagRunner's spec is uploaded as a new version of the pipeline (the pipeline is created on
first upload), a run starts in an experiment with the compiled runtime parameters, and its tasks are
reported as their states change until the run ends.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from errors import EsteiraError
from pipeline.config import UseCaseConfig

FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"})


class KubeflowRunError(EsteiraError, RuntimeError):
    """The run on Kubeflow did not succeed; the message names the failed tasks."""


@dataclass(frozen=True)
class KubeflowAuth:
    """KFP's usual ways in: a bearer token, a session cookie (Dex/oauth2-proxy), or the projected
    service-account token of a pod in the cluster."""

    existing_token: str | None = None
    cookies: str | None = None
    service_account_token: Path | None = None
    namespace: str | None = None  # multi-user Kubeflow: the profile namespace
    ssl_ca_cert: Path | None = None


@dataclass(frozen=True)
class Submission:
    pipeline_id: str
    version_id: str
    experiment_id: str
    run_id: str
    run_url: str


def write_package(job_path: Path, package: Path) -> tuple[Path, dict[str, Any]]:
    """The compiled PipelineJob's bare pipeline spec as the YAML package KFP uploads, and its runtime config."""
    job = json.loads(job_path.read_text())
    package.write_text(yaml.safe_dump(job["pipelineSpec"], sort_keys=False))
    return package, job.get("runtimeConfig", {})


def client_for(host: str, auth: KubeflowAuth) -> Any:
    """A kfp.Client for `host` with the chosen credentials (none: a port-forward or an open endpoint)."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    credentials = (ServiceAccountTokenVolumeCredentials(str(auth.service_account_token))
                   if auth.service_account_token else None)
    return kfp.Client(host=host, existing_token=auth.existing_token, cookies=auth.cookies,
                      credentials=credentials, namespace=auth.namespace or "kubeflow",
                      ssl_ca_cert=str(auth.ssl_ca_cert) if auth.ssl_ca_cert else None)


def submit(client: Any, config: UseCaseConfig, package: Path, runtime: dict[str, Any], *, host: str,
           experiment: str | None = None, version_name: str | None = None, pipeline_root: str | None = None,
           service_account: str | None = None, now: datetime | None = None) -> Submission:
    """Upload `package` as a new version of the config's pipeline and start a run of that version; its
    artifacts go under `pipeline_root` (default: the compiled one, the config's pipeline.root)."""
    name = config.pipeline.name
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    version_name = version_name or f"{name}-{stamp}"
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=name,
                                             description=f"Esteira pipeline {name}").pipeline_id
    version = client.upload_pipeline_version(str(package), pipeline_version_name=version_name,
                                             pipeline_id=pipeline_id)
    namespace = client.get_user_namespace() or None
    experiment_id = client.create_experiment(name=experiment or name, namespace=namespace).experiment_id
    parameters = {key: _plain(value) for key, value in (runtime.get("parameterValues") or {}).items()}
    run = client.run_pipeline(experiment_id=experiment_id, job_name=f"{name} {stamp}", params=parameters,
                              pipeline_id=pipeline_id, version_id=version.pipeline_version_id,
                              pipeline_root=pipeline_root or runtime.get("gcsOutputDirectory"),
                              service_account=service_account)
    return Submission(pipeline_id, version.pipeline_version_id, experiment_id, run.run_id, run_url(host, run.run_id))


def _plain(value: Any) -> Any:
    """A runtime parameter as a plain value (PipelineJob JSON may wrap it as {'stringValue': ...})."""
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.values()))
    return value


def run_url(host: str, run_id: str) -> str:
    """The run's page in the KFP UI served at `host` (as kfp.Client prints it)."""
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def follow(client: Any, run_id: str, out: TextIO, *, task_names: set[str] | None = None, poll_seconds: float = 5.0,
           timeout_seconds: float = 24 * 3600.0, sleep: Callable[[float], None] = time.sleep) -> str:
    """Print each task's state as it changes until the run ends; its final state, or KubeflowRunError
    naming the failed tasks (those of the pipeline's own DAG when `task_names` is given)."""
    seen: dict[str, str] = {}
    started = time.monotonic()
    while True:
        run = client.get_run(run_id)
        for task in (run.run_details.task_details or []) if run.run_details else []:
            state = str(task.state or "PENDING")
            label = task.display_name or task.task_id
            if seen.get(task.task_id) != state:
                seen[task.task_id] = state
                print(f"kubeflow: task {label}: {state}", file=out, flush=True)
        state = str(run.state or "PENDING")
        if state in FINAL_STATES:
            break
        if time.monotonic() - started > timeout_seconds:
            raise KubeflowRunError(f"run {run_id} still {state} after {timeout_seconds:.0f} s; it goes on in "
                                   f"Kubeflow (esteira stopped following it)")
        sleep(poll_seconds)
    print(f"kubeflow: run {run_id}: {state}", file=out, flush=True)
    if state != "SUCCEEDED":
        raise KubeflowRunError(_failure(run, state, task_names))
    return state


def _failure(run: Any, state: str, task_names: set[str] | None) -> str:
    tasks = (run.run_details.task_details or []) if run.run_details else []
    failed = [task for task in tasks if str(task.state) == "FAILED"]
    own = [task for task in failed if task_names is None or task.display_name in task_names]
    named = own or failed
    parts = []
    for task in named:
        message = getattr(task.error, "message", None) if task.error else None
        parts.append(f"{task.display_name}{f' ({message})' if message else ''}")
    run_error = getattr(run.error, "message", None) if run.error else None
    what = f"failed task{'s' if len(parts) > 1 else ''}: {', '.join(parts)}" if parts else \
        f"no task reported failed{f'; run error: {run_error}' if run_error else ''}"
    return f"Kubeflow run {run.run_id} ended {state}; {what}"


def spec_task_names(package: Path) -> set[str]:
    """The tasks of the pipeline's root DAG, as kfp's own loader reads the package."""
    from kfp import components

    return set(components.load_component_from_file(str(package)).pipeline_spec.root.dag.tasks)


def submit_and_follow(config: UseCaseConfig, host: str, auth: KubeflowAuth, out: TextIO, *, work: Path,
                      image: str | None = None, wait: bool = True, experiment: str | None = None,
                      version_name: str | None = None, pipeline_root: str | None = None,
                      service_account: str | None = None, poll_seconds: float = 5.0) -> Submission:
    """Compile into `work`, upload, start the run and (with `wait`) follow it to its end."""
    from pipeline.runners import compile_kubeflow

    job = compile_kubeflow(config, work / "kubeflow_pipeline.json", image=image)
    package, runtime = write_package(job, work / "pipeline.yaml")
    tasks = spec_task_names(package)  # kfp's loader refuses a package KFP would refuse, before any upload
    client = client_for(host, auth)
    submission = submit(client, config, package, runtime, host=host, experiment=experiment,
                        version_name=version_name, pipeline_root=pipeline_root, service_account=service_account)
    print(f"kubeflow: pipeline {config.pipeline.name} version {submission.version_id} uploaded; run "
          f"{submission.run_id} started: {submission.run_url}", file=out, flush=True)
    if wait:
        follow(client, submission.run_id, out, task_names=tasks, poll_seconds=poll_seconds)
    return submission
