"""CsvExampleGen with the recording executor; pipelines give it the id CsvExampleGen, so reports and caches
name the node as before."""
from __future__ import annotations

from tfx.components import CsvExampleGen
from tfx.dsl.components.base import executor_spec

from components.recording_csv_example_gen.executor import RecordingCsvExecutor


class RecordingCsvExampleGen(CsvExampleGen):
    """TFX's CsvExampleGen whose executor also records the input folder's DVC version on the Examples."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(RecordingCsvExecutor)
