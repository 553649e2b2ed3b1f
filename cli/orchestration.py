"""``esteira airflow up | down`` and ``esteira alert-trigger``: the local Airflow and its Alertmanager webhook."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def airflow_main(argv: list[str]) -> int:
    from observability.stack import StackError, stop_processes
    from orchestration.airflow_local import DAGS_FOLDER, ROOT, AirflowSettings, start_airflow

    parser = argparse.ArgumentParser(
        prog="esteira airflow", description="The local Airflow: scheduler and web server over orchestration/dags.")
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--state-dir", type=Path, default=ROOT / "outputs" / "airflow")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    args = parser.parse_args(argv)
    if args.action == "down":
        stopped = stop_processes(args.state_dir)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return 0
    settings = AirflowSettings(args.state_dir, args.port, os.environ.get("AIRFLOW_DB") or None)
    try:
        credentials = start_airflow(settings)
    except StackError as error:
        print(f"airflow: {error}", file=sys.stderr)
        return 1
    print(f"Airflow: {credentials['url']}  user {credentials['username']}  password {credentials['password']}")
    print(f"DAGs folder {DAGS_FOLDER}; state and logs in {args.state_dir}; stop with `make airflow-down`")
    return 0


def alert_trigger_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="esteira alert-trigger",
        description="Alertmanager webhook: a canary alert starts the continuous-training DAG run.")
    parser.add_argument("--port", type=int, default=9099)
    parser.add_argument("--airflow_credentials", type=Path, default=Path("outputs/airflow/admin.json"))
    parser.add_argument("--auth_token_file", required=True, help="tokens Alertmanager may present, caller:token")
    args = parser.parse_args(argv)
    import uvicorn

    from orchestration.alert_trigger import AirflowTarget, create_app
    from serving.api.auth import Authenticator

    try:
        auth = Authenticator.load(str(args.auth_token_file))
    except ValueError as error:  # serving.config.ConfigError
        print(f"alert trigger: {error}", file=sys.stderr)
        return 2
    assert auth is not None  # a token file was given
    app = create_app(AirflowTarget.from_credentials(args.airflow_credentials), auth)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info")
    return 0
