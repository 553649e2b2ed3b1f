"""Check custom resources against the CRD schemas of their projects, kept in k8s/crds/.

kubernetes-validate knows only built-in kinds; a ServiceMonitor, PrometheusRule, TFJob or FlinkDeployment would pass
unchecked. Here each one is validated with jsonschema against the `openAPIV3Schema` of its CRD
version, made strict the way the API server's strict field validation is: an object schema that
lists `properties` rejects fields it does not list, unless it preserves unknown fields.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from deploy.manifests import K8S, Manifest

CRD_DIR = K8S / "crds"


@dataclass(frozen=True)
class Problem:
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.message}"


@cache
def schemas(folder: Path = CRD_DIR) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, from every CRD file in `folder`."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = with_object_fields(version["schema"]["openAPIV3Schema"])
                found[(f"{group}/{version['name']}", kind)] = strict(schema)
    return found


def with_object_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """The root schema with apiVersion, kind and metadata, which every object has: CRD generators such as
    Fabric8's (the Flink operator's) list only spec and status, and the API server adds the rest."""
    properties = schema.get("properties", {})
    implicit = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    return {**schema, "properties": {**implicit, **properties}}


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy where every object that lists its properties forbids the others."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


def is_custom(manifest: Manifest) -> bool:
    return (manifest["apiVersion"], manifest["kind"]) in schemas()


def validate(manifests: Iterable[Manifest]) -> list[Problem]:
    """Every problem of every custom resource whose CRD is kept here (none: all valid)."""
    problems = []
    known = schemas()
    for manifest in manifests:
        schema = known.get((manifest["apiVersion"], manifest["kind"]))
        if schema is None:
            continue
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        validator = jsonschema.Draft7Validator(schema)
        for error in sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(part) for part in error.absolute_path) or "(top)"
            problems.append(Problem(name, f"{where}: {error.message}"))
    return problems


def _builtin(api_version: str) -> bool:
    """Kinds of Kubernetes itself: the core group (v1) and groups without a dot or under k8s.io."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def custom_problems(manifests: list[Manifest]) -> list[str]:
    """Problems of custom resources; a kind with no CRD kept in k8s/crds/ is one too."""
    problems = [f"{m['kind']}/{m['metadata']['name']}: no CRD schema for {m['apiVersion']} {m['kind']} in "
                f"{CRD_DIR} (add the CRD of its project there)"
                for m in manifests if not _builtin(m["apiVersion"]) and not is_custom(m)]
    return problems + [str(problem) for problem in validate(manifests)]


def rendered_problems(files: list[Path]) -> list[str]:
    """Problems of rendered manifest files (custom resources vs k8s/crds/) and of the PrometheusRule
    (it must match configs/monitoring/rules); empty when all hold."""
    from deploy import alert_rules

    problems = []
    for path in files:
        manifests = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        problems += [f"{path}: {problem}" for problem in custom_problems(manifests)]
    if not alert_rules.is_current():
        problems.append(f"{alert_rules.TARGET} differs from configs/monitoring/rules: run `make k8s-rules`")
    return problems
