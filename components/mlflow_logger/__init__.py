"""The MLflow logger at the end of the DAG: one MLflow run per pipeline run, pushed versions registered."""
from components.mlflow_logger.component import MlflowLogger
from components.mlflow_logger.executor import MlflowLoggerExecutor

__all__ = ["MlflowLogger", "MlflowLoggerExecutor"]
