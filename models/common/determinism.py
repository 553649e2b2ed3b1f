"""One seed for the whole training: Python, NumPy and TensorFlow seeds plus deterministic ops.

Call `make_deterministic(seed)` once, before building the model and the input pipeline, so that
weight initialisation, dropout, shuffling and DP noise all derive from it. With the same seed,
data, code, library versions and hardware, two trainings on CPU with one replica give
bit-identical weights. Under MultiWorkerMirroredStrategy, also call `reseed_model_ops` between
the input pipeline and the model (see there). Deterministic ops can be slower, and on GPU some ops then raise
`UnimplementedError` instead of running non-deterministically; across replicas the order of
floating-point sums may still differ between device counts.
"""

from __future__ import annotations

import tensorflow as tf


def make_deterministic(seed: int) -> int:
    """Seed `random`, `numpy.random` and `tf.random`, enable op determinism; return the seed.

    The returned seed is the one to record with the model (it is `seed`, validated).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    tf.keras.utils.set_random_seed(seed)  # random.seed, np.random.seed and tf.random.set_seed
    tf.config.experimental.enable_op_determinism()
    return seed


def reseed_model_ops(seed: int, strategy: tf.distribute.Strategy) -> int:
    """Re-seed TensorFlow ops so every worker of a multi-worker cluster draws its own randomness.

    Call it after building the input pipeline and before building the model. Workers run the
    same program, so with one global seed each worker's random ops get the same op seeds: the
    data shuffles agree (needed, so that sharding partitions the data), but DP-SGD noise would be
    the same draw on every worker and the summed noise √R times larger than configured (safe for
    privacy, worse for accuracy). Initial weights are broadcast from the chief, so they stay
    identical. Single-process strategies are left as they are. Returns the seed now in force.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if resolver is None or not spec:
        return seed
    roles = sorted(spec)
    position = sum(len(spec[r]) for r in roles[: roles.index(resolver.task_type)]) + resolver.task_id
    worker_seed = (seed + 1_000_003 * position) % 2**32
    tf.random.set_seed(worker_seed)
    return worker_seed
