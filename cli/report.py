"""``esteira report [run | drift | lgpd]``: parse the arguments and call the reports of pipeline/ and privacy/."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.options import config_from, reports_folder, with_config
from errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config import UseCaseConfig


def report_main(argv: list[str]) -> int:
    report = argparse.ArgumentParser(
        prog="esteira report",
        description="from MLMD: the latest run (default), a drift report, or a version's LGPD report")
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
    return _report(report.parse_args(argv))


def _report(args: argparse.Namespace) -> int:
    from serving.cuda_probe import cuda_probe_filtered

    config = config_from(args)
    with cuda_probe_filtered():  # the reports read TFDV statistics and TFMA results: TensorFlow loads
        if args.kind == "drift":
            return _drift_report(args, config)
        if args.kind == "lgpd":
            return _lgpd_report(args, config)
        from pipeline.report import format_report, load_report

        print(format_report(load_report(config.pipeline.metadata_path, config.pipeline.name),
                            config.serving.base_path))
    return 0


def _drift_report(args: argparse.Namespace, config: UseCaseConfig) -> int:
    if not (args.from_ and args.to):
        raise ConfigError("report drift needs --from and --to: two pushed versions (e.g. --from 1718000000 "
                          "--to 1718100000) or two spans (--from span:3 --to span:4)")
    from evidence import governance, lineage
    from evidence.drift_report import write_drift_report
    from pipeline.config import drift_exclusions

    store = lineage.open_store(config.pipeline.metadata_path)
    report = governance.drift_between(store, config.serving.model_name, governance.resolve_end(store, args.from_),
                                      governance.resolve_end(store, args.to), excluded=drift_exclusions(config))
    paths = write_drift_report(report, reports_folder(args, config, f"drift-{args.from_}-{args.to}".replace(":", "")))
    print(f"drift {report.from_side} -> {report.to_side}: {len(report.drifted)} of {len(report.features)} "
          f"feature(s) above threshold{': ' + ', '.join(report.drifted) if report.drifted else ''}")
    if report.predictions:
        print(f"prediction shift: Jensen-Shannon {report.predictions.jensen_shannon:.4f} "
              f"(threshold {report.predictions.threshold}) on {report.predictions.examples} examples")
    print(f"wrote {paths['html']} and {paths['json']}")
    return 0


def _lgpd_report(args: argparse.Namespace, config: UseCaseConfig) -> int:
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
    paths = write_compliance_report(report, reports_folder(args, config, args.version))
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
