"""``esteira run | gate | compile``: parse the arguments and call the pipeline room (pipeline/)."""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cli.options import config_from, with_config
from errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config import UseCaseConfig


def run_parser() -> argparse.ArgumentParser:
    run = argparse.ArgumentParser(prog="esteira run", description="run the TFX pipeline of a use case")
    with_config(run)
    run.add_argument("--runner", choices=["local", "beam", "kubeflow"],
                     help="default: runner.default in the config; kubeflow: submit to Kubeflow Pipelines (--host)")
    kubeflow = run.add_argument_group("kubeflow", "submitting to Kubeflow Pipelines (--runner kubeflow)")
    kubeflow.add_argument("--host", help="KFP API endpoint (default: $KF_PIPELINES_ENDPOINT)")
    kubeflow.add_argument("--no-wait", action="store_true", help="print the run's URL and return at once")
    kubeflow.add_argument("--existing-token", help="bearer token (default: $KF_PIPELINES_TOKEN)")
    kubeflow.add_argument("--cookies", help="session cookie, e.g. 'authservice_session=...' (Dex / oauth2-proxy)")
    kubeflow.add_argument("--sa-token", type=Path, nargs="?", const=Path("/var/run/secrets/kubeflow/pipelines/token"),
                          help="in the cluster: the projected service-account token (default path: KFP's)")
    kubeflow.add_argument("--namespace", help="multi-user Kubeflow: the profile namespace")
    kubeflow.add_argument("--ssl-ca-cert", type=Path, help="CA bundle of the endpoint's TLS certificate")
    kubeflow.add_argument("--experiment", help="KFP experiment (default: the pipeline's name)")
    kubeflow.add_argument("--service-account", help="Kubernetes service account the run's pods use")
    kubeflow.add_argument("--pipeline-root", help="where the run's artifacts go, e.g. gs://bank-ml/esteira or "
                                                  "minio://mlpipeline/esteira (default: pipeline.root)")
    kubeflow.add_argument("--image", help="pipeline image for every component (default: runner.kubeflow_image)")
    run.add_argument("--to", metavar="COMPONENT",
                     help="stop after this component, e.g. Trainer (the workers of a multi-worker TFJob)")
    return run


def run_main(argv: list[str]) -> int:
    return _run(run_parser().parse_args(argv))


def gate_main(argv: list[str]) -> int:
    gate = argparse.ArgumentParser(
        prog="esteira gate",
        description="may the latest run's model be deployed? blessed, finite weights, AUC beats the champion")
    with_config(gate)
    gate.add_argument("--out", type=Path, help="folder for verdict.json and the run's drift and LGPD reports "
                                               "(default: <pipeline root>/../gate)")
    return _gate(gate.parse_args(argv))


def compile_main(argv: list[str]) -> int:
    compile_ = argparse.ArgumentParser(prog="esteira compile", description="compile the pipeline for an orchestrator")
    compile_.add_argument("target", choices=["kubeflow"], help="kubeflow: a KFP v2 / Vertex PipelineJob spec")
    with_config(compile_)
    compile_.add_argument("--out", type=Path, help="output file (.json, or .yaml for the bare pipeline spec)")
    compile_.add_argument("--image", help="container image for every component (default: runner.kubeflow_image)")
    return _compile(compile_.parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    from pipeline.beam_engines import check_artifact_root
    from pipeline.config import check_data_columns

    config = config_from(args)
    runner = args.runner or config.runner.default
    if runner == "kubeflow":
        return _run_kubeflow(args, config)
    stray = [f"--{name.replace('_', '-')}" for name in KUBEFLOW_OPTIONS if getattr(args, name)]
    if stray:
        raise ConfigError(f"{', '.join(stray)} only apply to --runner kubeflow; add it or leave them out")
    check_artifact_root(config.runner.engine, str(config.pipeline.root), in_process=True)
    check_data_columns(config)
    from pipeline.run_log import name_after_run, output_to, started_log

    print(f"esteira: running pipeline {config.pipeline.name} with the {runner} runner "
          f"(artifacts in {config.pipeline.root})", flush=True)
    began = datetime.datetime.now()
    log = started_log(config.pipeline.root, began)
    started = time.monotonic()
    error: Exception | None = None
    try:
        with output_to(log) as terminal:
            try:
                from pipeline.runners import run  # TensorFlow's import lines go to the log too

                run(config, runner, to_node=args.to, progress=terminal)
            except Exception as caught:  # noqa: BLE001 (re-raised below, once the report says which component failed)
                error = caught
            # Reading the run back imports and logs as well: inside, so that goes to the log too.
            run_id, summary = _run_summary(config, time.monotonic() - started, error)
    except BaseException:
        print(f"esteira: full log of this run: {log}", file=sys.stderr, flush=True)
        raise
    if summary:
        print(summary)
    log = name_after_run(log, run_id, began)
    print(f"esteira: full log of this run: {log}", file=sys.stderr if error else sys.stdout, flush=True)
    if error is not None:
        raise error
    return 0


KUBEFLOW_OPTIONS = ("host", "no_wait", "existing_token", "cookies", "sa_token", "namespace", "ssl_ca_cert",
                    "experiment", "service_account", "pipeline_root", "image")




def _run_kubeflow(args: argparse.Namespace, config: UseCaseConfig) -> int:
    """Submit to Kubeflow Pipelines; the data lives where the cluster reads it, so nothing is read here."""
    from pipeline.beam_engines import check_artifact_root

    if args.to:
        raise ConfigError("--to runs part of the pipeline in this process; Kubeflow runs the whole pipeline "
                          "(leave out --to, or use --runner local)")
    check_artifact_root(config.runner.engine, args.pipeline_root or config.pipeline.remote_root
                        or str(config.pipeline.root), in_process=False)
    host = args.host or os.environ.get("KF_PIPELINES_ENDPOINT")
    if not host:
        raise ConfigError("--runner kubeflow needs --host, the KFP API endpoint (e.g. http://localhost:8080 "
                          "through kubectl port-forward svc/ml-pipeline-ui, or https://kubeflow.bank/pipeline)")
    import tempfile

    from pipeline.kubeflow_run import KubeflowAuth, KubeflowRunError, submit_and_follow

    auth = KubeflowAuth(existing_token=args.existing_token or os.environ.get("KF_PIPELINES_TOKEN"),
                        cookies=args.cookies, service_account_token=args.sa_token, namespace=args.namespace,
                        ssl_ca_cert=args.ssl_ca_cert)
    print(f"esteira: submitting pipeline {config.pipeline.name} to Kubeflow Pipelines at {host}", flush=True)
    with tempfile.TemporaryDirectory(prefix="esteira-kfp-") as work:
        try:
            submit_and_follow(config, host, auth, sys.stdout, work=Path(work), image=args.image,
                              wait=not args.no_wait, experiment=args.experiment, pipeline_root=args.pipeline_root,
                              service_account=args.service_account)
        except KubeflowRunError as error:
            print(f"esteira: {error}", file=sys.stderr)
            return 1
    return 0


def _run_summary(config: UseCaseConfig, wall: float, error: Exception | None) -> tuple[str | None, str | None]:
    """The run's id and printed report, from MLMD; none when a failed run recorded nothing."""
    from evidence.lineage import LineageError
    from pipeline.report import format_report, load_report

    try:
        report = load_report(config.pipeline.metadata_path, config.pipeline.name)
    except LineageError:
        if error is None:
            raise
        return None, None  # the run failed before recording anything; its own error is the one to show
    return report.run_id, format_report(report, config.serving.base_path, wall)


def _gate(args: argparse.Namespace) -> int:
    config = config_from(args)
    from components.model_validator.checks import non_finite_variables
    from evidence import lineage
    from pipeline.model_gate import decide, facts_from_report, governance_reports, write_gate
    from pipeline.report import build_report

    store = lineage.open_store(config.pipeline.metadata_path)
    report = build_report(store, config.pipeline.name)
    margin = config.evaluation.promotion_gate().champion_margin
    verdict = decide(facts_from_report(report, non_finite_variables), margin)
    out = args.out or config.pipeline.root.parent / "gate"
    path = write_gate(verdict, governance_reports(store, report.run_id), out)
    for note in verdict.notes:
        print(f"gate: {note}")
    for reason in verdict.reasons:
        print(f"gate: FAILED: {reason}", file=sys.stderr)
    version = f" version {report.version}" if report.version else ""
    print(f"gate: run {report.run_id}{version} {'passed' if verdict.passed else 'failed'}; wrote {path}")
    return 0 if verdict.passed else 1


def _compile(args: argparse.Namespace) -> int:
    config = config_from(args)
    from pipeline.runners import compile_kubeflow

    output = args.out or Path(f"outputs/{config.pipeline.name}/kubeflow_pipeline.json")
    path = compile_kubeflow(config, output, image=args.image)
    print(f"wrote Kubeflow Pipelines v2 spec to {path}")
    return 0
