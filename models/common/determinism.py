"""One seed for the whole training: Python, NumPy and TensorFlow seeds plus deterministic ops.

Call `make_deterministic(seed)` once, before building the model and the input pipeline, so that
weight initialisation, dropout, shuffling and DP noise all derive from it. With the same seed,
data, code, library versions and hardware, two trainings on CPU with one replica give
bit-identical weights. Deterministic ops can be slower, and on GPU some ops then raise
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
