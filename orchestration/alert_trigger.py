"""Alertmanager → Airflow: a webhook receiver that starts an ``esteira-continuous-training`` run for the drift
alerts, with the alerts in the run's conf.

Why a receiver between them: Alertmanager posts its own payload (``{"version": "4", "alerts": [...]}``), and
Airflow's REST API accepts only a DAG-run body (``{"conf": ...}``, unknown fields refused), so something has to
translate. Alertmanager authenticates with a bearer token (``http_config.authorization`` in
configs/monitoring/alertmanager.yml; tokens checked by serving.api.auth, one ``caller:token`` a line), and this
receiver calls Airflow with the basic-auth login ``make airflow`` printed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestration.continuous_dag import DAG_ID
from serving.api.auth import Authenticator

RETRAIN_ALERTS = ("EsteiraInputDrift", "EsteiraPredictionDistributionShift")


@dataclass(frozen=True)
class AirflowTarget:
    url: str
    username: str
    password: str
    dag_id: str = DAG_ID

    @classmethod
    def from_credentials(cls, path: Path) -> AirflowTarget:
        """The ``admin.json`` ``make airflow`` writes (url, username, password)."""
        try:
            document = json.loads(path.read_text())
            return cls(document["url"], document["username"], document["password"])
        except (OSError, ValueError, KeyError) as error:
            raise SystemExit(f"alert trigger: cannot read Airflow credentials from {path} ({error!r}); "
                             "start Airflow with `make airflow`, which writes them") from None


def retrain_alerts(payload: Any) -> list[dict[str, Any]]:
    """The firing drift alerts of an Alertmanager webhook payload (labels, start time), or ValueError."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise ValueError('expected Alertmanager\'s webhook payload: {"version": "4", "alerts": [...]}')
    return [{"labels": alert.get("labels", {}), "startsAt": alert.get("startsAt")}
            for alert in payload["alerts"]
            if isinstance(alert, dict) and alert.get("status") == "firing"
            and alert.get("labels", {}).get("alertname") in RETRAIN_ALERTS]


def trigger_run(target: AirflowTarget, alerts: list[dict[str, Any]], timeout: float = 30.0) -> str:
    """Create the DAG run through Airflow's REST API; its run id."""
    response = httpx.post(f"{target.url.rstrip('/')}/api/v1/dags/{target.dag_id}/dagRuns",
                          json={"conf": {"alerts": alerts, "trigger": "alertmanager"}},
                          auth=(target.username, target.password), timeout=timeout)
    if response.status_code != 200:
        raise RuntimeError(f"Airflow at {target.url} answered {response.status_code} to the DAG run of "
                           f"{target.dag_id}: {response.text[:500]}")
    return str(response.json()["dag_run_id"])


def create_app(target: AirflowTarget, auth: Authenticator) -> Starlette:
    async def alertmanager(request: Request) -> JSONResponse:
        if auth.caller(request.headers.get("authorization")) is None:
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            alerts = retrain_alerts(await request.json())
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        if not alerts:
            return JSONResponse({"triggered": False, "reason": f"no firing alert among {', '.join(RETRAIN_ALERTS)}"})
        try:
            run_id = trigger_run(target, alerts)
        except (httpx.HTTPError, RuntimeError) as error:
            return JSONResponse({"error": str(error)}, status_code=502)  # Alertmanager retries
        return JSONResponse({"triggered": True, "dag_id": target.dag_id, "dag_run_id": run_id})

    return Starlette(routes=[Route("/alertmanager", alertmanager, methods=["POST"])])
