"""Scheduling and triggers on Apache Airflow: the pipeline as an Airflow DAG (TFX's AirflowDagRunner), the
local Airflow (``make airflow``). Runs in .venv-airflow (requirements-airflow.lock), because Airflow 2 needs
SQLAlchemy < 2 and Flask < 3."""
