"""Airflow DAG file: the esteira-continuous-training DAG (orchestration.continuous_dag), set by ESTEIRA_CT_*."""
from orchestration.continuous_dag import DAG_ID, build_dag

globals()[DAG_ID] = build_dag()
