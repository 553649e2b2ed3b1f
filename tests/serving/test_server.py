"""The server process (server.py): startup objects frozen out of the cycle collector."""
from __future__ import annotations


def test_startup_objects_frozen_later_ones_collectable() -> None:
    """Full collections skip what existed at startup; cycles made afterwards (a later version) are still freed."""
    import gc
    import weakref

    from serving.server import freeze_startup_objects

    class Node:
        pass

    try:
        frozen = freeze_startup_objects()
        # TensorFlow's objects, at least; server threads left by earlier tests may free a few frozen ones
        assert frozen > 10_000 and 0.99 * frozen <= gc.get_freeze_count() <= frozen
        later = Node()
        later.self = later  # a reference cycle: only the cycle collector frees it
        alive = weakref.ref(later)
        del later
        gc.collect()
        assert alive() is None
    finally:
        gc.unfreeze()
