"""The data gate: schema anomalies and span-to-span drift, blocking or warning."""
from components.data_validator.component import DataValidator
from components.data_validator.previous_span import PreviousSpanStrategy

__all__ = ["DataValidator", "PreviousSpanStrategy"]
