"""The make targets deploy.yml runs on manifests: pin images by digest, the podman play manifest,
and the canary label steps on a models.config copy."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from deploy import canary
from deploy.manifests import ManifestError, play_manifest, pod_specs, set_image
from serving.config import read_model_config
from serving.flags import parse_flags

from .conftest import REPO, make

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """k8s/ beside configs/, as in the repository, so a step may edit it (ESTEIRA_K8S_DIR)."""
    shutil.copytree(REPO / "k8s", tmp_path / "k8s", ignore=shutil.ignore_patterns("crds"))
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    return tmp_path / "k8s"


def test_deploy_pin_sets_every_esteira_image_by_digest(tmp_path: Path, k8s_copy: Path) -> None:
    digests = tmp_path / "deploy"
    digests.mkdir()
    (digests / "serving.digest").write_text(DIGEST)
    (digests / "pipeline.digest").write_text(DIGEST.replace("ab", "cd"))
    env = {"ESTEIRA_K8S_DIR": str(k8s_copy)}
    pinned = make("deploy-pin", f"DEPLOY_OUT={digests}", "REGISTRY=registry.test/team", env=env)
    assert pinned.returncode == 0, pinned.stderr
    rendered = make("k8s-render", "OVERLAY=prod", f"K8S_OUT={tmp_path}", env=env)
    assert rendered.returncode == 0, rendered.stderr
    manifests = list(yaml.safe_load_all((tmp_path / "prod.yaml").read_text()))
    images = {c["image"] for m in manifests if m for spec in pod_specs(m) for c in spec["containers"]}
    assert images == {f"registry.test/team/esteira-serving@{DIGEST}",
                      f"registry.test/team/esteira-pipeline@{DIGEST.replace('ab', 'cd')}",
                      "tensorflow/serving:2.19.1", "ghcr.io/mlflow/mlflow:v3.17.2"}
    assert (k8s_copy / "overlays/prod/kustomization.yaml").read_text().startswith("# Production.")  # comments kept
    shown = make("deploy-pin", f"DEPLOY_OUT={tmp_path / 'missing'}", env=env)
    assert shown.returncode != 0 and "no " in shown.stderr and "run make deploy-images" in shown.stderr


def test_set_image_refuses_what_is_not_a_pin(k8s_copy: Path, monkeypatch) -> None:
    monkeypatch.setattr("deploy.manifests.K8S", k8s_copy)
    before = (k8s_copy / "overlays/prod/kustomization.yaml").read_text()
    for reference, message in (("repo/x@sha256:123", "is not sha256:<64 hex digits>"),
                               ("repo/x:latest", "`latest` is not a release"), ("repo/x", "names neither a digest")):
        with pytest.raises(ManifestError, match=message):
            set_image("prod", "esteira/serving", reference)
    with pytest.raises(ManifestError, match="unknown overlay 'staging'"):
        set_image("staging", "esteira/serving", "repo/x:1.0.0")
    assert (k8s_copy / "overlays/prod/kustomization.yaml").read_text() == before


def test_play_manifest_is_the_dev_serving_deployment_alone(tmp_path: Path) -> None:
    store = tmp_path / "models"
    store.mkdir()
    out = tmp_path / "k8s"
    result = make("k8s-play-manifest", "PLAY_IMAGE=localhost/esteira-serving:dev", f"MODEL_STORE={store}",
                  f"K8S_OUT={out}")
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all((out / "dev-serving-play.yaml").read_text()))
    assert [d["kind"] for d in documents] == ["ConfigMap", "Deployment"]
    spec = documents[1]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "localhost/esteira-serving:dev"
    assert {(p["containerPort"], p["hostPort"], p["hostIP"]) for p in container["ports"]} == {
        (8500, 8500, "127.0.0.1"), (8501, 8501, "127.0.0.1")}
    flags = parse_flags(container["args"])
    models = documents[0]["data"]["models.config"]
    assert 'base_path: "/models/breast_cancer"' in models and flags.model_config_file.endswith("/models.config")
    store_volume = next(v for v in spec["volumes"] if v["name"] == "model-store")
    assert store_volume["hostPath"]["path"] == str(store)
    assert container["readinessProbe"]["grpc"] == {"port": 8500} and flags.enable_grpc_healthcheck_service
    with pytest.raises(ManifestError, match="is not a folder"):
        play_manifest("dev", "tf-serving", model_store=tmp_path / "missing")
    with pytest.raises(ManifestError, match="podman needs a hostPath"):
        play_manifest("prod", "tf-serving")


def test_canary_start_promote_and_rollback_move_the_labels(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    shutil.copy(REPO / "configs/serving/models.config", config)
    started = make("canary-start", "MODEL=fraud", "VERSION=3", f"MODEL_CONFIG={config}")
    assert started.returncode == 0, started.stderr
    fraud = {m.name: m for m in read_model_config(config).model_config_list.config}["fraud"]
    assert dict(fraud.version_labels) == {"stable": 1, "canary": 3}
    assert list(fraud.model_version_policy.specific.versions) == [1, 3]   # TF Serving loads both, no more
    rolled = make("canary-rollback", "MODEL=fraud", f"MODEL_CONFIG={config}")
    assert rolled.returncode == 0, rolled.stderr
    fraud = {m.name: m for m in read_model_config(config).model_config_list.config}["fraud"]
    assert dict(fraud.version_labels) == {"stable": 1, "canary": 1}
    assert list(fraud.model_version_policy.specific.versions) == [1]
    canary.start(config, "fraud", 4)
    promoted = make("canary-promote", "MODEL=fraud", f"MODEL_CONFIG={config}")
    assert promoted.returncode == 0, promoted.stderr
    fraud = {m.name: m for m in read_model_config(config).model_config_list.config}["fraud"]
    assert dict(fraud.version_labels) == {"stable": 4, "canary": 4}
    assert list(fraud.model_version_policy.specific.versions) == [4]


def test_canary_steps_name_what_is_missing(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    shutil.copy(REPO / "configs/serving/models.config", config)
    before = config.read_text()
    with pytest.raises(canary.CanaryError, match="model 'taxi' is not in"):
        canary.promote(config, "taxi")
    with pytest.raises(canary.CanaryError, match="no 'stable' label"):
        canary.start(config, "breast_cancer", 2)
    with pytest.raises(canary.CanaryError, match="positive model version"):
        canary.start(config, "fraud", 0)
    assert config.read_text() == before
