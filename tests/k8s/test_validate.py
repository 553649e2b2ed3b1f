"""Both overlays pass `kubernetes-validate --strict` and the custom resources their projects' CRD
schemas (make k8s-validate), and each check rejects a broken manifest."""
from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from deploy import crds
from deploy.crds import custom_problems
from deploy.manifests import find, one

from .conftest import make


def test_make_k8s_validate_passes_for_every_overlay(tmp_path) -> None:
    result = make("k8s-validate", f"K8S_OUT={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "k8s-validate: dev prod prod-tls flink valid for Kubernetes" in result.stdout


def test_strict_validation_rejects_a_misspelt_field(rendered) -> None:
    hpa = copy.deepcopy(one(rendered["prod"], "HorizontalPodAutoscaler", "tf-serving"))
    kubernetes_validate.validate(hpa, "1.30.0", strict=True)
    target = hpa["spec"]["metrics"][0]["resource"]["target"]
    target["averageUtilisation"] = target.pop("averageUtilization")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, "1.30.0", strict=True)


def test_every_custom_kind_has_a_crd_schema_kept_in_the_repository(rendered) -> None:
    for manifests in rendered.values():
        kinds = {(m["apiVersion"], m["kind"]) for m in manifests if crds.is_custom(m)}
        assert kinds == {("monitoring.coreos.com/v1", "ServiceMonitor"),
                         ("monitoring.coreos.com/v1", "PrometheusRule"), ("kubeflow.org/v1", "TFJob")}
        assert custom_problems(manifests) == []


def test_crd_schemas_reject_unknown_fields_and_wrong_types(rendered) -> None:
    tfjob = copy.deepcopy(one(rendered["prod"], "TFJob", "esteira-training"))
    tfjob["spec"]["tfReplicaSpecs"]["Chief"]["replica"] = 1                   # misspelt `replicas`
    monitor = copy.deepcopy(one(rendered["prod"], "ServiceMonitor", "esteira"))
    monitor["spec"]["endpoints"][0]["interval"] = 15                        # a duration string is required
    rule = copy.deepcopy(one(rendered["prod"], "PrometheusRule", "esteira"))
    rule["spec"]["groups"][0]["rules"][0]["expression"] = "up"              # `expr`
    problems = [str(p) for p in crds.validate([tfjob, monitor, rule])]
    assert any(p.startswith("TFJob/esteira-training: spec.tfReplicaSpecs.Chief") and "'replica'" in p
               for p in problems), problems
    assert any(p.startswith("ServiceMonitor/esteira: spec.endpoints.0.interval") for p in problems), problems
    assert any(p.startswith("PrometheusRule/esteira: spec.groups.0.rules.0") and "'expression'" in p
               for p in problems), problems


def test_a_custom_kind_without_a_kept_crd_is_reported(rendered) -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    problems = custom_problems([*find(rendered["dev"], "ConfigMap"), unknown])
    assert len(problems) == 1 and problems[0].startswith("Widget/w: no CRD schema for example.com/v1 Widget")
