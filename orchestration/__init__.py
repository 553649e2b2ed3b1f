"""Scheduling and triggers on Apache Airflow: the pipeline as an Airflow DAG (a task per TFX node, launched
by TFX's IR launcher), the day's span, the continuous-training DAG, the Alertmanager trigger, the local
Airflow (``make airflow``), restoring a DVC data version. Runs in .venv-airflow (requirements-airflow.lock),
because TFX 1.21's Airflow extra pins Airflow 2, which needs SQLAlchemy < 2 and Flask < 3."""
