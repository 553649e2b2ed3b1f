"""The `esteira` command: parses arguments and dispatches to the room that does the work."""
from __future__ import annotations

import os

# Keras 2 everywhere (DESIGN decision 6): must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import datetime
import importlib
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

# pipeline.config imports Beam (seconds): only the subcommands that read a config load it, so
# `esteira serve` starts without the pipeline stack (and runs in the serving image, which lacks it).
if TYPE_CHECKING:
    from pipeline.config import UseCaseConfig

# Subcommands owned by other rooms: name -> ("module:function", help). Each function takes the
# remaining argv and returns an exit code; it is imported only when its subcommand runs.
DELEGATED: dict[str, tuple[str, str]] = {
    "serve": ("serving.cli:serve_main", "run the TF Serving-compatible model server"),
    "predict": ("serving.cli:predict_main", "send a prediction request over REST or gRPC"),
    "promote": ("tracking.cli:promote_main",
                "make a registered version the champion (MLflow alias); the server's stable label follows"),
    "rollback": ("tracking.cli:rollback_main",
                 "move the champion back to the previous one; the server's stable label follows"),
    "dashboard": ("observability.cli:dashboard_main", "render the dashboard's panels from Prometheus as static HTML"),
    "console": ("console.cli:console_main",
                "the model review console: compare versions, read their evidence, try predictions, promote"),
}
DATASETS: dict[str, tuple[str, str]] = {
    "breast-cancer": ("pipeline.datasets.breast_cancer:breast_cancer_main",
                      "write scikit-learn's breast-cancer data set to CSV"),
    "fraud": ("pipeline.datasets.fraud_profiles:fraud_main",
              "simulate card transactions (synthetic, with PII) as one CSV folder per day; "
              "--profile esteira (default) or handbook (the Fraud Detection Handbook's simulator)"),
}


def _load(target: str) -> Callable[[list[str]], int]:
    module_name, function_name = target.split(":")
    return getattr(importlib.import_module(module_name), function_name)


def _parse_override(text: str) -> tuple[str, Any]:
    from pipeline.config import ConfigError

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set training.train_steps=50")
    return key, yaml.safe_load(value)


def _config_from(args: argparse.Namespace) -> UseCaseConfig:
    from pipeline.config import load_config

    config = load_config(args.config)
    if getattr(args, "set", None):
        config = config.with_overrides(dict(_parse_override(item) for item in args.set))
    return config


def _run(args: argparse.Namespace) -> int:
    from pipeline.config import check_data_columns

    config = _config_from(args)
    runner = args.runner or config.runner.default
    if runner == "kubeflow":
        return _run_kubeflow(args, config)
    stray = [f"--{name.replace('_', '-')}" for name in KUBEFLOW_OPTIONS if getattr(args, name)]
    if stray:
        from pipeline.config import ConfigError

        raise ConfigError(f"{', '.join(stray)} only apply to --runner kubeflow; add it or leave them out")
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
    from pipeline.config import ConfigError

    if args.to:
        raise ConfigError("--to runs part of the pipeline in this process; Kubeflow runs the whole pipeline "
                          "(leave out --to, or use --runner local)")
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
    config = _config_from(args)
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
    config = _config_from(args)
    from pipeline.runners import compile_kubeflow

    output = args.out or Path(f"outputs/{config.pipeline.name}/kubeflow_pipeline.json")
    path = compile_kubeflow(config, output, image=args.image)
    print(f"wrote Kubeflow Pipelines v2 spec to {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from serving.cuda_probe import cuda_probe_filtered

    config = _config_from(args)
    with cuda_probe_filtered():  # the reports read TFDV statistics and TFMA results: TensorFlow loads
        if args.kind == "drift":
            return _drift_report(args, config)
        if args.kind == "lgpd":
            return _lgpd_report(args, config)
        from pipeline.report import format_report, load_report

        print(format_report(load_report(config.pipeline.metadata_path, config.pipeline.name),
                            config.serving.base_path))
    return 0


def _reports_folder(args: argparse.Namespace, config: UseCaseConfig, name: str) -> Path:
    """--out, else a reports/ folder beside the pipeline root (outputs/<use case>/reports/<name>)."""
    return args.out or config.pipeline.root.parent / "reports" / name


def _drift_report(args: argparse.Namespace, config: UseCaseConfig) -> int:
    from pipeline.config import ConfigError

    if not (args.from_ and args.to):
        raise ConfigError("report drift needs --from and --to: two pushed versions (e.g. --from 1718000000 "
                          "--to 1718100000) or two spans (--from span:3 --to span:4)")
    from evidence import governance, lineage
    from evidence.drift_report import write_drift_report
    from pipeline.config import drift_exclusions

    store = lineage.open_store(config.pipeline.metadata_path)
    report = governance.drift_between(store, config.serving.model_name, governance.resolve_end(store, args.from_),
                                      governance.resolve_end(store, args.to), excluded=drift_exclusions(config))
    paths = write_drift_report(report, _reports_folder(args, config, f"drift-{args.from_}-{args.to}".replace(":", "")))
    print(f"drift {report.from_side} -> {report.to_side}: {len(report.drifted)} of {len(report.features)} "
          f"feature(s) above threshold{': ' + ', '.join(report.drifted) if report.drifted else ''}")
    if report.predictions:
        print(f"prediction shift: Jensen-Shannon {report.predictions.jensen_shannon:.4f} "
              f"(threshold {report.predictions.threshold}) on {report.predictions.examples} examples")
    print(f"wrote {paths['html']} and {paths['json']}")
    return 0


def _lgpd_report(args: argparse.Namespace, config: UseCaseConfig) -> int:
    from pipeline.config import ConfigError

    if not args.version:
        raise ConfigError("report lgpd needs --version, a pushed model version (the folder name under "
                          f"{config.serving.base_path})")
    from evidence import governance, lineage
    from privacy.compliance import write_compliance_report

    store = lineage.open_store(config.pipeline.metadata_path)
    declared = config.governance.model_dump(mode="json") if config.governance else None
    audit_logs = config.governance.access_audit_logs if config.governance else []
    if declared:
        declared.pop("access_audit_logs")
    report = governance.compliance_report(store, governance.find_pushed(store, args.version),
                                          config.serving.model_name, declared, audit_logs,
                                          no_traffic_by_design=args.no_traffic_by_design)
    paths = write_compliance_report(report, _reports_folder(args, config, args.version))
    print(f"LGPD report of {config.serving.model_name} version {args.version}: {report.access.calls} inference "
          f"call(s) by {len(report.access.callers)} caller(s); wrote {paths['html']}, {paths['json']} "
          f"and {paths['model_card']}")
    if report.access.tampered:
        for problem in report.access.problems:
            print(f"esteira: VERIFICATION FAILED: {problem}", file=sys.stderr)
        return 1
    if report.verification == "unverified":
        for finding in report.access.findings:
            print(f"esteira: NOT VERIFIED: {finding}", file=sys.stderr)
        return 1
    return 0


def _schema(args: argparse.Namespace) -> int:
    config = _config_from(args)
    from evidence.lineage import LineageError
    from pipeline.config import ConfigError
    from pipeline.schema_freeze import freeze_schema

    try:
        path = freeze_schema(config, force=args.force)
    except LineageError as error:
        raise ConfigError(str(error)) from None
    print(f"wrote the inferred schema to {path}; the pipeline now imports it (ImportSchemaGen)")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esteira", description="Esteira: the ML production line.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = commands.add_parser("data", help="produce a data set (see `esteira data -h`)")
    data.add_argument("dataset", choices=sorted(DATASETS), help="; ".join(
        f"{name}: {help_text}" for name, (_target, help_text) in DATASETS.items()))

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", required=True, type=Path, help="use-case YAML, e.g. configs/breast_cancer.yaml")
        sub.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a config value, e.g. --set training.train_steps=50 (repeatable)")

    run = commands.add_parser("run", help="run the TFX pipeline of a use case")
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
    run.set_defaults(handler=_run)

    gate = commands.add_parser(
        "gate", help="may the latest run's model be deployed? blessed, finite weights, AUC beats the champion")
    with_config(gate)
    gate.add_argument("--out", type=Path, help="folder for verdict.json and the run's drift and LGPD reports "
                                               "(default: <pipeline root>/../gate)")
    gate.set_defaults(handler=_gate)

    compile_ = commands.add_parser("compile", help="compile the pipeline for an orchestrator")
    compile_.add_argument("target", choices=["kubeflow"], help="kubeflow: a KFP v2 / Vertex PipelineJob spec")
    with_config(compile_)
    compile_.add_argument("--out", type=Path, help="output file (.json, or .yaml for the bare pipeline spec)")
    compile_.add_argument("--image", help="container image for every component (default: runner.kubeflow_image)")
    compile_.set_defaults(handler=_compile)

    report = commands.add_parser(
        "report", help="from MLMD: the latest run (default), a drift report, or a version's LGPD report")
    report.add_argument("kind", nargs="?", choices=["run", "drift", "lgpd"], default="run",
                        help="run: summarise the latest run; drift: --from A --to B; lgpd: --version V")
    with_config(report)
    report.add_argument("--from", dest="from_", metavar="A", help="drift: a pushed version or span:N")
    report.add_argument("--to", metavar="B", help="drift: a pushed version or span:N")
    report.add_argument("--version", help="lgpd: the pushed model version")
    report.add_argument("--no-traffic-by-design", action="store_true",
                        help="lgpd: the version has served no traffic on purpose, so missing or empty access "
                             "audit logs are expected (the report says so) rather than a failure")
    report.add_argument("--out", type=Path, help="folder for the report files (default: <pipeline root>/../reports/)")
    report.set_defaults(handler=_report)

    schema = commands.add_parser("schema", help="curate the data schema of a use case")
    schema.add_argument("action", choices=["freeze"],
                        help="freeze: write MLMD's latest inferred schema to validation.schema_file")
    with_config(schema)
    schema.add_argument("--force", action="store_true", help="replace an existing curated schema")
    schema.set_defaults(handler=_schema)

    for name, (_target, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    try:
        if argv and argv[0] in DELEGATED:
            return _load(DELEGATED[argv[0]][0])(argv[1:])
        if len(argv) >= 2 and argv[0] == "data" and argv[1] in DATASETS:
            return _load(DATASETS[argv[1]][0])(argv[2:])
        args = _build_parser().parse_args(argv)
        return args.handler(args)
    except KeyboardInterrupt:
        print("esteira: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one line for users; --debug shows where
        if debug:
            traceback.print_exc()
        if _is_config_error(error):
            print(f"esteira: error: {error}", file=sys.stderr)
            return 2
        if not debug:
            print(f"esteira: error: {type(error).__name__}: {error} (run with --debug for the traceback)",
                  file=sys.stderr)
        return 1


def _is_config_error(error: Exception) -> bool:
    """A ConfigError can only come from pipeline.config, so one raised before it was imported is not."""
    config_module = sys.modules.get("pipeline.config")
    return config_module is not None and isinstance(error, config_module.ConfigError)


if __name__ == "__main__":
    sys.exit(main())
