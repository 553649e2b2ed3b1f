"""ModelOptimizer: TFLite variants of the blessed model, measured and gated, handed to the Pusher."""
from components.model_optimizer.component import ModelOptimizer, TFLiteModels

__all__ = ["ModelOptimizer", "TFLiteModels"]
