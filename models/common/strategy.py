"""Distribution strategies from config: `none`, `mirrored` (N replicas) and `multi_worker`.

Order matters. Logical CPU devices can only be declared before TensorFlow initialises its
devices (the first op, `list_logical_devices`, building a strategy...). A process that wants
`mirrored` with N replicas on a machine without GPUs must call `configure_logical_cpus(N)` as
early as possible: at the top of the runner or CLI entry point, before any component runs TF.
`build_strategy` calls it too, which is enough when nothing has touched TF yet, and fails with a
message naming that fix when it is too late.

Scaling out needs no code change, only configuration:

* one machine, several GPUs: `kind="mirrored"`, `num_replicas=<GPUs to use>`; GPUs are used
  instead of logical CPUs whenever TensorFlow sees at least that many.
* several machines: `kind="multi_worker"`; every process gets a `TF_CONFIG` environment
  variable naming the whole cluster and its own role, e.g. for worker 1 of 2::

      {"cluster": {"worker": ["host-a:12345", "host-b:12345"]},
       "task": {"type": "worker", "index": 1}}

  Worker 0 (or a task of type `chief`) is the chief: it writes the SavedModel and the
  checkpoints that every worker restores from, so the checkpoint directory must be on storage
  all workers share. On Kubernetes, a Kubeflow `TFJob` (training-operator) writes `TF_CONFIG`
  into each replica's pod from its `Chief`/`Worker` replica specs; on Vertex AI, the
  `worker_pool_specs` of a custom job do the same.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

import tensorflow as tf

from errors import EsteiraError

StrategyKind = Literal["none", "mirrored", "multi_worker"]
STRATEGY_KINDS: tuple[str, ...] = ("none", "mirrored", "multi_worker")


class StrategyConfigError(EsteiraError, ValueError):
    """The strategy requested cannot be built in this process, with the reason and the fix."""


def configure_logical_cpus(num_devices: int) -> None:
    """Split the host CPU into `num_devices` logical devices, one replica each.

    Idempotent: if the process already has at least `num_devices` logical CPUs nothing changes.
    Call it before anything initialises TensorFlow's devices; afterwards the split is frozen.
    """
    if num_devices < 1:
        raise StrategyConfigError(f"num_devices must be >= 1, got {num_devices}.")
    if num_devices == 1:
        return  # every process has at least one CPU device, configured or not
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0])
    if current is not None and len(current) >= num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
        )
    except RuntimeError as error:  # "Virtual devices cannot be modified after being initialized"
        have = len(tf.config.list_logical_devices("CPU"))
        raise StrategyConfigError(
            f"{num_devices} logical CPU devices were requested but TensorFlow already initialised "
            f"its devices with {have}. Call models.common.strategy.configure_logical_cpus("
            f"{num_devices}) at the start of the process, before any TensorFlow op runs."
        ) from error


def build_strategy(kind: StrategyKind, num_replicas: int = 1) -> tf.distribute.Strategy:
    """Return the strategy for `kind`; create and compile the model inside its `scope()`.

    `none` is TensorFlow's default strategy (one device, no replication). `mirrored` uses the
    first `num_replicas` GPUs, or as many logical CPUs when there are fewer GPUs. `multi_worker`
    reads the cluster from `TF_CONFIG`; `num_replicas` is then ignored (one replica per worker
    on CPU, one per GPU otherwise).
    """
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        if num_replicas < 1:
            raise StrategyConfigError(f"mirrored needs num_replicas >= 1, got {num_replicas}.")
        gpus = tf.config.list_physical_devices("GPU")
        if len(gpus) >= num_replicas:
            devices = [f"/gpu:{i}" for i in range(num_replicas)]
        else:
            configure_logical_cpus(num_replicas)
            devices = [f"/cpu:{i}" for i in range(num_replicas)]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "multi_worker":
        read_tf_config()  # fail early, with the fix, on a missing or malformed TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver()
        )
    raise StrategyConfigError(
        f"Unknown strategy kind {kind!r}; allowed values: {', '.join(STRATEGY_KINDS)}."
    )


def read_tf_config() -> dict[str, Any]:
    """Parse and check `TF_CONFIG`, the cluster description multi-worker training needs."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise StrategyConfigError(
            "strategy 'multi_worker' needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host-a:12345", "host-b:12345"]}, '
            '"task": {"type": "worker", "index": 0}}. Set it in every worker process '
            "(a Kubeflow TFJob does this for you), or use strategy 'mirrored' on one machine."
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise StrategyConfigError(f"TF_CONFIG is not valid JSON: {error}.") from error
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise StrategyConfigError("TF_CONFIG has no 'cluster' mapping of role -> [host:port].")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise StrategyConfigError("TF_CONFIG has no 'task' with 'type' and 'index'.")
    role, index = task["type"], task["index"]
    if role not in cluster or not 0 <= int(index) < len(cluster[role]):
        raise StrategyConfigError(
            f"TF_CONFIG task {role}:{index} is not in its cluster {sorted(cluster)}."
        )
    return config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes outputs (the only process outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    role, index = resolver.task_type, resolver.task_id
    if role == "chief":
        return True
    return role == "worker" and index == 0 and "chief" not in resolver.cluster_spec().as_dict()


def worker_output_dir(path: str, strategy: tf.distribute.Strategy) -> str:
    """Where this worker saves a model: `path` on the chief, a private scratch dir elsewhere.

    Under MultiWorkerMirroredStrategy every worker must take part in `model.save` (it reads
    variables collectively), but only the chief's copy is the real output. Delete the returned
    directory afterwards on non-chief workers.
    """
    if is_chief(strategy):
        return path
    resolver = strategy.cluster_resolver
    return os.path.join(
        os.path.dirname(path.rstrip("/")) or ".",
        f".worker-{resolver.task_type}-{resolver.task_id}",
        os.path.basename(path.rstrip("/")),
    )
