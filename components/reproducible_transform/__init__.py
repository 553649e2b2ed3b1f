"""TFX's Transform, reproducible: fixed analyzer batches (see executor)."""
from components.reproducible_transform.executor import ReproducibleTransformExecutor

__all__ = ["ReproducibleTransformExecutor"]
