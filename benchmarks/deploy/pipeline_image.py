"""The pipeline image at work: `esteira run` on the breast-cancer data inside the container.

Records the image's size, the wall time of the run in the container, and, side by side in the same
session, the same run on the host's virtualenv (this machine is shared and noisy: compare the ratio).

    python benchmarks/deploy/pipeline_image.py [--out benchmarks/deploy/results] [--skip-host]

Needs localhost/esteira-pipeline:dev (`make image-pipeline`). The container is removed afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from deploy.images import DEFAULT_STATE, IMAGES  # noqa: E402
from deploy.podman import Podman  # noqa: E402

RUN = "esteira data breast-cancer --out data/breast_cancer && esteira run --config configs/breast_cancer.yaml"


def run_in_container(podman: Podman, image: str) -> tuple[float, str]:
    """Wall time of RUN in a fresh container, and the last lines of its report."""
    name = f"esteira-bench-{os.getpid()}"
    started = time.monotonic()
    try:
        result = podman.run("run", "--name", name, image, "sh", "-c", RUN, check=False)
    finally:
        podman.remove_container(name)
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"the pipeline failed in the container ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall, result.stdout.strip()


def run_on_host() -> float:
    """The same two commands with the host's virtualenv, in a scratch copy of the configs."""
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["cp", "-r", str(REPO / "configs"), scratch], check=True)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true",
                   PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
        started = time.monotonic()
        subprocess.run(["sh", "-c", RUN], cwd=scratch, env=env, check=True, capture_output=True)
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--skip-host", action="store_true", help="only the container run")
    args = parser.parse_args()
    podman = Podman(DEFAULT_STATE)
    image = IMAGES["pipeline"]
    container_wall, report = run_in_container(podman, image)
    host_wall = None if args.skip_host else run_on_host()
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "command": "make bench-pipeline-image",
        "image": image,
        "image_size_mb": round(podman.image_size(image) / 1e6),
        "serving_image_size_mb": (round(podman.image_size(IMAGES["serving"]) / 1e6)
                                  if podman.image_exists(IMAGES["serving"]) else None),
        "container_run_s": round(container_wall, 1),
        "host_run_s": None if host_wall is None else round(host_wall, 1),
        "report_tail": report.splitlines()[-12:],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline_image.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "report_tail"}, indent=2))
    print("\n".join(result["report_tail"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
