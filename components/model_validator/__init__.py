"""Gate before the Pusher: finite weights, a real Predict through the model server, agreeing signatures."""
from components.model_validator.component import ModelValidator

__all__ = ["ModelValidator"]
