"""MLflow tracking and model registry for pipeline runs; knows nothing of TFX (components adapt it)."""
