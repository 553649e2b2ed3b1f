"""Airflow DAG file: one DAG per Esteira use case named in ESTEIRA_AIRFLOW_CONFIGS (orchestration.pipeline_dag).

Airflow parses every file of its dags folder; this one only asks the library for the DAGs and exposes them.
"""
from orchestration.pipeline_dag import dags_from_environment

globals().update(dags_from_environment())
