"""TFX's CsvExampleGen executor plus: the DVC version of the input folder becomes Examples properties.

A use case without a privacy policy reads its CSVs through TFX's CsvExampleGen; the anonymizing ExampleGen
records the same properties (privacy/data_version.py), so every use case's model version names the exact
data version it was trained on (``dvc_md5``, ``dvc_path``, ``dvc_file``, ``dvc_matches_working_copy``),
and the MLflow run and the LGPD report read them from the same place.
"""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.example_gen.csv_example_gen import executor as csv_executor
from tfx.types import artifact_utils, standard_component_specs

from privacy.data_version import record_data_version


class RecordingCsvExecutor(csv_executor.Executor):
    """Reads the CSVs as TFX does, then puts the input folder's DVC version on the Examples artifact."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        record_data_version(examples, exec_properties[standard_component_specs.INPUT_BASE_KEY])
