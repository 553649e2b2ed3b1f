"""``esteira dashboard | grafana``: the dashboard's panels as a static page from Prometheus, or as Grafana JSON."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from observability.static_page import PrometheusError, parse_duration
from observability.static_page import render as render_page


def dashboard_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="esteira dashboard",
        description="Render every panel of the model-server dashboard from Prometheus into DIR/index.html "
                    "(charts drawn by a bundled uPlot; the page opens offline).")
    parser.add_argument("--prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--stack", type=Path,
                        help="a running `make stack` state folder (outputs/stack): its Prometheus, whatever its port, "
                             "is the default of --prometheus")
    parser.add_argument("--out", required=True, type=Path, help="directory for index.html")
    parser.add_argument("--range", default="1h", help="time range ending now (or at --end): 30s, 15m, 1h, 2d")
    parser.add_argument("--end", type=float, default=None, help="end of the range, unix seconds (default: now)")
    parser.add_argument("--model", help="only this model (default: every model)")
    parser.add_argument("--version", help="only this version (default: every version)")
    parser.add_argument("--max-features", type=int, default=4,
                        help="input features drawn against training, highest PSI first (default 4)")
    args = parser.parse_args(argv)
    try:
        seconds = parse_duration(args.range)
    except ValueError as exc:
        parser.error(f"--range: {exc}")
    if args.max_features < 1:
        parser.error("--max-features must be at least 1")
    prometheus = args.prometheus
    if prometheus is None:
        if args.stack is None:
            parser.error("pass --prometheus URL, or --stack outputs/stack for a running `make stack`")
        from observability.stack import StackError, read_state

        try:
            prometheus = str(read_state(args.stack)["prometheus_url"])
        except StackError as exc:
            print(f"esteira dashboard: {exc}", file=sys.stderr)
            return 1
    started = time.monotonic()
    try:
        target, rows = render_page(prometheus, args.out, range_seconds=seconds, end=args.end, model=args.model,
                              version=args.version, max_repeat=args.max_features)
    except PrometheusError as exc:
        print(f"esteira dashboard: {exc}", file=sys.stderr)
        return 1
    panels = [p for row in rows for p in row.panels]
    failed = [p for p in panels if p.error]
    empty = [p for p in panels if not p.error and not p.has_data]
    print(f"esteira dashboard: wrote {target} ({len(panels)} panels, {len(panels) - len(failed) - len(empty)} "
          f"with data) in {time.monotonic() - started:.1f} s")
    for panel in empty:
        print(f"  no data: {panel.panel.title}")
    for panel in failed:
        print(f"  query failed: {panel.panel.title}: {panel.error}", file=sys.stderr)
    return 1 if failed else 0


def grafana_main(argv: list[str]) -> int:
    from observability.grafana import DASHBOARD_FILE, render  # Grafana's SDK: only for this command

    parser = argparse.ArgumentParser(
        prog="esteira grafana", description="Grafana dashboard JSON from the panels observability.panels defines.")
    parser.add_argument("--out", type=Path, default=DASHBOARD_FILE, help="where to write the JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs from the generated JSON")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run `esteira grafana` and commit it", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(args.out)
    return 0
