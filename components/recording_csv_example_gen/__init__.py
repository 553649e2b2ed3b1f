"""A CsvExampleGen whose executor records the input folder's DVC version on the Examples artifact."""
from components.recording_csv_example_gen.component import RecordingCsvExampleGen
from components.recording_csv_example_gen.executor import RecordingCsvExecutor

__all__ = ["RecordingCsvExampleGen", "RecordingCsvExecutor"]
