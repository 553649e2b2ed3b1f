"""A Trainer executor that records the run_fn's training facts on the Model artifact."""
from components.recording_trainer.executor import RecordingTrainerExecutor

__all__ = ["RecordingTrainerExecutor"]
