"""The ``esteira-continuous-training`` Airflow DAG: a task per step of orchestration.continuous_training.

wait_for_new_data (a sensor: new data under the config's data folder, or the alerts of an Alertmanager-
triggered run) → run_pipeline → start_canary (skipped with the rest when no version was pushed) → soak →
decide (branch) → promote | rollback → audit_decision. One run at a time; the sensor checks every
ESTEIRA_CT_POKE_SECONDS (default 300) and gives up for the day after ESTEIRA_CT_SENSOR_TIMEOUT (default
one day), which skips the run.
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from typing import Any

from orchestration import continuous_training as ct

DAG_ID = "esteira-continuous-training"
log = logging.getLogger(__name__)


def _settings() -> ct.Settings:
    return ct.Settings.from_environment()


def _reason(dag_run: Any = None, ti: Any = None, **_: Any) -> bool:
    reason = ct.trigger_reason(_settings(), dag_run.conf if dag_run else None)
    log.info("trigger: %s", reason or "no new data and no alert yet")
    if reason:
        ti.xcom_push(key="trigger", value=reason)
    return reason is not None


def _run_pipeline(**_: Any) -> int | None:
    version = ct.run_pipeline(_settings())
    log.info("pipeline pushed version %s" if version else "pipeline pushed no version (a gate kept it back)%s",
             version or "")
    return version


def _has_version(ti: Any, **_: Any) -> bool:
    return ti.xcom_pull(task_ids="run_pipeline") is not None


def _start_canary(ti: Any, **_: Any) -> None:
    log.info("canary: %s", ct.start_canary(_settings(), int(ti.xcom_pull(task_ids="run_pipeline"))))


def _soak(ti: Any, **_: Any) -> dict[str, Any]:
    settings = _settings()
    firing = ct.soak(settings)
    evidence = ct.canary_evidence(settings.prometheus_url, settings.config().serving.model_name)
    log.info("soak of %g s: firing %s; evidence %s", settings.soak_seconds, firing or "none", evidence)
    return {"firing": firing, "evidence": evidence}


def _decide(ti: Any, **_: Any) -> str:
    firing = ti.xcom_pull(task_ids="soak")["firing"]
    decision = ct.decide(firing)
    log.info("decision: %s (%s)", decision,
             f"canary alerts fired: {', '.join(firing)}" if firing else "no canary alert fired during the soak")
    return decision


def _promote(ti: Any, **_: Any) -> str:
    done = ct.promote(_settings(), int(ti.xcom_pull(task_ids="run_pipeline")))
    log.info("promoted: %s", done)
    return done


def _rollback(**_: Any) -> str:
    done = ct.rollback(_settings())
    log.info("rolled back: %s", done)
    return done


def _audit(ti: Any, **_: Any) -> None:
    decision = ti.xcom_pull(task_ids="decide")
    soaked = ti.xcom_pull(task_ids="soak")
    record = ct.audit_decision(
        _settings(), trigger=ti.xcom_pull(task_ids="wait_for_new_data", key="trigger"),
        version=int(ti.xcom_pull(task_ids="run_pipeline")), decision=decision, firing=soaked["firing"],
        evidence=soaked["evidence"], action=ti.xcom_pull(task_ids=decision))
    log.info("audit record %s", record)


def build_dag() -> Any:
    from airflow import DAG
    from airflow.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
    from airflow.sensors.python import PythonSensor

    poke = float(os.environ.get("ESTEIRA_CT_POKE_SECONDS", "300"))
    timeout = float(os.environ.get("ESTEIRA_CT_SENSOR_TIMEOUT", str(24 * 3600)))
    with DAG(DAG_ID, schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False, max_active_runs=1,
             default_args={"owner": "esteira", "retries": 0}, tags=["esteira", "continuous-training"],
             description="new data or a drift alert: retrain, canary, soak, promote or roll back, audit") as dag:
        wait = PythonSensor(task_id="wait_for_new_data", python_callable=_reason, poke_interval=poke,
                            timeout=timeout, soft_fail=True, mode="poke")
        run = PythonOperator(task_id="run_pipeline", python_callable=_run_pipeline,
                             execution_timeout=timedelta(hours=6))
        pushed = ShortCircuitOperator(task_id="version_pushed", python_callable=_has_version)
        start = PythonOperator(task_id="start_canary", python_callable=_start_canary)
        soaked = PythonOperator(task_id="soak", python_callable=_soak)
        decide = BranchPythonOperator(task_id="decide", python_callable=_decide)
        promote = PythonOperator(task_id=ct.PROMOTE, python_callable=_promote)
        rollback = PythonOperator(task_id=ct.ROLLBACK, python_callable=_rollback)
        audit = PythonOperator(task_id="audit_decision", python_callable=_audit,
                               trigger_rule="none_failed_min_one_success")
        wait >> run >> pushed >> start >> soaked >> decide >> [promote, rollback] >> audit
    return dag
