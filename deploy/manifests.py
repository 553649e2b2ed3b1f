"""Render the kustomize overlays in k8s/ and edit what a deploy changes (image references).

Rendering is kustomize's job (`kubectl kustomize`); this module only runs it, parses the result
and writes the few edits a deploy makes, so the workflows and the tests see the same YAML.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from errors import EsteiraError

REPO = Path(__file__).resolve().parents[1]
# ESTEIRA_K8S_DIR: a copy of k8s/ (beside a copy of configs/) that a test may edit.
K8S = Path(os.environ.get("ESTEIRA_K8S_DIR") or REPO / "k8s")
OVERLAYS = ("dev", "prod", "prod-tls")
# The generators read configs/ (one copy of each config), which lies outside k8s/.
KUSTOMIZE_FLAGS = ("--load-restrictor=LoadRestrictionsNone",)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

Manifest = dict[str, Any]


class ManifestError(EsteiraError, RuntimeError):
    """A manifest cannot be rendered or edited; the message says what to fix."""


STANDALONE = ("flink",)  # kustomizations beside the overlays, deployed on their own (Beam's Flink session cluster)


def overlay_dir(overlay: str) -> Path:
    path = K8S / overlay if overlay in STANDALONE else K8S / "overlays" / overlay
    if not (path / "kustomization.yaml").is_file():
        known = [*sorted(p.name for p in (K8S / "overlays").iterdir()), *STANDALONE]
        raise ManifestError(f"unknown overlay {overlay!r}: no {path}/kustomization.yaml (overlays: {', '.join(known)})")
    return path


def kubectl() -> str:
    found = shutil.which("kubectl")
    if not found:
        raise ManifestError("kubectl not found on PATH: `kubectl kustomize` renders the overlays "
                            "(any kubectl >= 1.27 bundles kustomize v5; no cluster is needed)")
    return found


def render_text(overlay: str) -> str:
    """The overlay as `kubectl kustomize` renders it (multi-document YAML)."""
    result = subprocess.run([kubectl(), "kustomize", *KUSTOMIZE_FLAGS, str(overlay_dir(overlay))],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ManifestError(f"kubectl kustomize {overlay} failed: {result.stderr.strip()}")
    return result.stdout


def render(overlay: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(render_text(overlay)) if doc]


def find(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: Iterable[Manifest], kind: str, name: str) -> Manifest:
    found = find(manifests, kind, name)
    if len(found) != 1:
        raise ManifestError(f"expected one {kind} named {name}, found {len(found)}")
    return found[0]


def pod_specs(manifest: Manifest) -> list[Manifest]:
    """Pod specs of a workload: a Deployment's template, or each TFJob replica's template."""
    spec = manifest.get("spec", {})
    if manifest["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [spec["template"]["spec"]]
    if manifest["kind"] == "TFJob":
        return [replica["template"]["spec"] for replica in spec["tfReplicaSpecs"].values()]
    return []


def set_image(overlay: str, name: str, reference: str) -> Path:
    """Pin image `name` (as the base names it) to `reference`: `repo@sha256:...` or `repo:tag`.

    Edits the overlay's `images:` the way `kustomize edit set image` would, keeping the file's
    comments above `images:` intact.
    """
    repository, digest, tag = _split_reference(reference)
    path = overlay_dir(overlay) / "kustomization.yaml"
    document = yaml.safe_load(path.read_text())
    images = document.setdefault("images", [])
    entry = next((image for image in images if image.get("name") == name), None)
    if entry is None:
        entry = {"name": name}
        images.append(entry)
    entry.pop("newTag", None)
    entry.pop("digest", None)
    if repository != name:
        entry["newName"] = repository
    else:
        entry.pop("newName", None)
    if digest:
        entry["digest"] = digest
    else:
        entry["newTag"] = tag
    text = path.read_text()
    header = "".join(line for line in text.splitlines(keepends=True)[:_first_key_line(text)])
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    return path


def _first_key_line(text: str) -> int:
    for index, line in enumerate(text.splitlines()):
        if line and not line.startswith("#"):
            return index
    return 0


def _split_reference(reference: str) -> tuple[str, str | None, str | None]:
    if "@" in reference:
        repository, digest = reference.split("@", 1)
        if not DIGEST.match(digest):
            raise ManifestError(f"image digest {digest!r} is not sha256:<64 hex digits> (from {reference!r})")
        return repository, digest, None
    repository, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag or not repository:
        raise ManifestError(f"image {reference!r} names neither a digest (repo@sha256:...) nor a tag (repo:1.2.3)")
    if tag == "latest":
        raise ManifestError(f"image {reference!r}: `latest` is not a release; pin a version tag or a digest")
    return repository, None, tag


def image_of(overlay: str, base_name: str) -> str:
    """The reference the overlay renders where the base names `base_name` (e.g. esteira/pipeline)."""
    document = yaml.safe_load((overlay_dir(overlay) / "kustomization.yaml").read_text())
    entry: dict[str, str] = next((image for image in document.get("images", []) if image.get("name") == base_name), {})
    repository = entry.get("newName", base_name)
    found = sorted({c["image"] for m in render(overlay) for spec in pod_specs(m) for c in spec["containers"]
                    if _repository(c["image"]) == repository})
    if len(found) != 1:
        raise ManifestError(f"{overlay}: expected one image for {base_name} ({repository}), found {found or 'none'}")
    return found[0]


def _repository(image: str) -> str:
    if "@" in image:
        return image.split("@", 1)[0]
    repository, sep, tag = image.rpartition(":")
    return repository if sep and "/" not in tag else image


def play_manifest(overlay: str, deployment: str, *, image: str | None = None,
                  model_store: Path | None = None) -> list[Manifest]:
    """One Deployment and the ConfigMaps it mounts, as `podman kube play` runs them alone.

    `image` swaps the container image (e.g. Esteira's serving image for TF Serving's); `model_store`
    points the `model-store` hostPath at a local folder of `<model>/<version>/` SavedModels.
    """
    manifests = render(overlay)
    chosen = one(manifests, "Deployment", deployment)
    spec = chosen["spec"]["template"]["spec"]
    if len(spec["containers"]) != 1:
        raise ManifestError(f"{deployment} has {len(spec['containers'])} containers; podman plays one here")
    if image:
        spec["containers"][0]["image"] = image
    config_maps = []
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            config_maps.append(one(manifests, "ConfigMap", volume["configMap"]["name"]))
        elif volume["name"] == "model-store":
            if "hostPath" not in volume:
                raise ManifestError(f"{overlay}'s {deployment} mounts the model store from "
                                    f"{sorted(set(volume) - {'name'})}; podman needs a hostPath (the dev overlay)")
            if model_store is not None:
                if not Path(model_store).is_dir():
                    raise ManifestError(f"model store {model_store} is not a folder; pass the folder that holds "
                                        "<model>/<version>/ (e.g. breast_cancer/1700000000/saved_model.pb)")
                volume["hostPath"]["path"] = str(Path(model_store).resolve())
        elif "persistentVolumeClaim" in volume or "secret" in volume:
            raise ManifestError(f"{deployment}'s volume {volume['name']} needs a cluster object; "
                                "only ConfigMaps, hostPath and emptyDir play alone")
    return [*config_maps, chosen]


def dump(manifests: Iterable[Manifest]) -> str:
    return yaml.safe_dump_all(list(manifests), sort_keys=False)
