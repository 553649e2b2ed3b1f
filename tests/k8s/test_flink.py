"""k8s/flink (Beam on a Flink session cluster) renders, passes the operator's CRD and Kubernetes' strict
schemas, and agrees with what `runner.engine: flink` sends it and with the Beam SDK installed here."""
from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import apache_beam
import kubernetes_validate
import pytest
import yaml

from deploy import crds
from deploy.manifests import K8S, Manifest, kubectl, one
from pipeline.beam_engines import FlinkEngine

K8S_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def flink() -> list[Manifest]:
    rendered = subprocess.run([kubectl(), "kustomize", str(K8S / "flink")], capture_output=True, text=True,
                              check=True).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def args_of(container: dict[str, Any]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in container.get("args", []) if "=" in arg)


def test_builtin_kinds_pass_strict_validation_and_the_flinkdeployment_its_crd(flink) -> None:
    assert {m["kind"] for m in flink} == {"FlinkDeployment", "Deployment", "Service", "PersistentVolumeClaim"}
    for manifest in flink:
        if crds.is_custom(manifest):
            continue
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    deployment = one(flink, "FlinkDeployment", "esteira-flink")
    assert crds.is_custom(deployment) and crds.validate(flink) == []
    pod = deployment["spec"]["taskManager"]["podTemplate"]  # the operator merges it into each TaskManager pod
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_the_crd_rejects_a_misspelt_field_a_wrong_type_and_an_unknown_flink_version(flink) -> None:
    deployment = copy.deepcopy(one(flink, "FlinkDeployment", "esteira-flink"))
    deployment["spec"]["taskManager"]["replica"] = deployment["spec"]["taskManager"].pop("replicas")
    deployment["spec"]["jobManager"]["resource"]["cpu"] = "one"
    deployment["spec"]["flinkVersion"] = "v1_99"
    problems = [str(p) for p in crds.validate([deployment])]
    assert any(p.startswith("FlinkDeployment/esteira-flink: spec.taskManager") and "'replica'" in p
               for p in problems), problems
    assert any(p.startswith("FlinkDeployment/esteira-flink: spec.jobManager.resource.cpu") for p in problems), problems
    assert any(p.startswith("FlinkDeployment/esteira-flink: spec.flinkVersion") for p in problems), problems


def test_the_job_server_serves_what_the_flink_engine_sends_and_reaches_the_jobmanager(flink) -> None:
    deployment = one(flink, "FlinkDeployment", "esteira-flink")
    server = one(flink, "Deployment", "esteira-flink-jobserver")["spec"]["template"]["spec"]["containers"][0]
    flags = args_of(server)
    # The operator names the JobManager's REST service <name>-rest, on Flink's REST port 8081.
    assert flags["flink-master"] == f"{deployment['metadata']['name']}-rest:8081"
    service = one(flink, "Service", "esteira-flink-jobserver")
    ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    assert ports["job"] == int(flags["job-port"]) and ports["artifact"] == int(flags["artifact-port"])
    address = f"{service['metadata']['name']}.{service['metadata']['namespace']}:{ports['job']}"
    engine = FlinkEngine(job_endpoint=address, sdk_container_image="ghcr.io/esteira-ml/esteira-pipeline:0.1.0",
                         parallelism=int(deployment["spec"]["flinkConfiguration"]["parallelism.default"]))
    assert "--job_endpoint=esteira-flink-jobserver.esteira:8099" in engine.args()


def test_the_worker_pool_sidecar_is_where_the_external_environment_points(flink) -> None:
    spec = one(flink, "FlinkDeployment", "esteira-flink")["spec"]["taskManager"]["podTemplate"]["spec"]
    sidecar = next(c for c in spec["containers"] if c["name"] == "beam-worker-pool")
    assert sidecar["command"][-1] == "apache_beam.runners.worker.worker_pool_main"
    port = int(args_of(sidecar)["service_port"])
    default_pool = FlinkEngine.model_fields["worker_pool"].default
    assert default_pool == f"localhost:{port}"  # a sidecar shares the TaskManager's network namespace
    assert sidecar["image"].startswith("ghcr.io/esteira-ml/esteira-pipeline:")


def test_versions_agree_flink_image_operator_field_job_server_and_the_installed_beam(flink) -> None:
    deployment = one(flink, "FlinkDeployment", "esteira-flink")["spec"]
    flink_minor = deployment["flinkVersion"].removeprefix("v").replace("_", ".")
    assert deployment["image"].split(":")[1].startswith(flink_minor + ".")
    job_server = one(flink, "Deployment", "esteira-flink-jobserver")["spec"]["template"]["spec"]["containers"][0]
    name, tag = job_server["image"].split(":")
    assert name == f"apache/beam_flink{flink_minor}_job_server"
    assert tag == apache_beam.__version__  # the job server speaks the SDK's version of the portability API


def test_the_shipped_crd_file_says_where_it_comes_from() -> None:
    text = (Path(crds.CRD_DIR) / "flink.apache.org_flinkdeployments.yaml").read_text()
    assert text.startswith("# flink-kubernetes-operator release-1.15.0")
    assert ("flink.apache.org/v1beta1", "FlinkDeployment") in crds.schemas()
