"""The governance evidence of a pushed version and the Evaluator's declared thresholds, read as the LGPD report
and the model card state them."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_each_recorded_column_gets_its_legal_basis() -> None:
    """The LGPD report's legal basis per field, from the policy recorded on the Examples artifact and the
    governance declarations: a column's own basis, else the processing's; dropped columns are not processed."""
    from ml_metadata.proto import metadata_store_pb2 as mpb

    from evidence.governance import _field_facts

    config = load_config(REPO / "configs" / "fraud.yaml")
    examples = mpb.Artifact()
    examples.custom_properties["privacy_policy"].string_value = config.privacy.canonical_json()
    fields = {field["column"]: field for field in _field_facts(examples, config.governance.model_dump(mode="json"))}
    assert set(fields) == set(config.privacy.columns)
    assert fields["birth_date"]["legal_basis"] == "credit protection (art. 7, X)"
    assert fields["birth_date"]["source"] == "governance.field_legal_bases"
    assert fields["amount"]["legal_basis"] == config.governance.legal_basis
    assert fields["amount"]["source"] == "governance.legal_basis"
    assert (fields["cpf"]["legal_basis"], fields["cpf"]["source"]) == ("not processed: dropped while reading", None)


def test_the_declared_thresholds_are_the_overall_slices_by_the_name_tfma_records() -> None:
    """Before a baseline exists TFMA drops change thresholds from the config it saves; the reports read the
    thresholds the Evaluator's execution declared, keyed as TFMA names the metric."""
    from evidence.evaluation import declared_thresholds

    overall = {"value_threshold": {"lower_bound": 0.9},
               "change_threshold": {"direction": "HIGHER_IS_BETTER", "absolute": -0.01}}
    gap = {"value_threshold": {"upper_bound": 0.05}}
    config = {"metrics_specs": [{"metrics": [
        {"class_name": "ExampleCount"},
        {"class_name": "AUC", "per_slice_thresholds": [
            {"slicing_specs": [{"feature_keys": ["region"]}], "threshold": {"value_threshold": {"lower_bound": 0.5}}},
            {"slicing_specs": [{}], "threshold": overall}]},
        {"class_name": "ProtectedGroupGaps", "module": "pipeline.fairness_metric",
         "config": json.dumps({"attribute": "age_band", "name": "false_positive_rate_gap_age_band"}),
         "threshold": gap}]}]}
    assert declared_thresholds(config) == {"auc": overall, "false_positive_rate_gap_age_band": gap}
