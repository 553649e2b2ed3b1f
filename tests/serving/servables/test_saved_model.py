"""The servable's fast entry points answer exactly as the SavedModel's public signature call."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from serving.demo_model import export_demo_model, make_examples
from serving.protocol.errors import ServingError
from serving.protocol.tensors import StackedInputs
from serving.servables.saved_model import SavedModelServable


@pytest.fixture(scope="module")
def servable(tmp_path_factory: pytest.TempPathFactory) -> SavedModelServable:
    base = tmp_path_factory.mktemp("servable") / "demo"
    export_demo_model(base, 1, warmup_records=0)
    loaded = SavedModelServable("demo", 1, base / "1")
    loaded.load()
    return loaded


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_stacked_runtime_call_equals_the_public_call(servable: SavedModelServable, rows: int) -> None:
    import tensorflow as tf

    signature = servable.signature("predict_raw")
    # the runtime call was chosen for both entry points (it agreed with the public call at load)
    assert signature.fused is not None and hasattr(signature.fused.runner, "concrete")
    assert signature.flat_call and hasattr(signature.flat_runner, "concrete")
    rng = np.random.default_rng(rows)
    aliases = signature.sorted_aliases
    matrix = rng.normal(size=(len(aliases), rows)).astype(np.float32)
    got = servable.predict(signature, StackedInputs(matrix, aliases))
    public = signature.function(**{alias: tf.constant(matrix[i]) for i, alias in enumerate(aliases)})
    assert got.keys() == public.keys()
    for alias, value in public.items():
        np.testing.assert_array_equal(got[alias], value.numpy())


def test_flat_runtime_call_equals_the_public_call_for_serialized_examples(servable: SavedModelServable) -> None:
    import tensorflow as tf

    signature = servable.signature("serving_default")
    assert signature.fused is None and signature.flat_call and hasattr(signature.flat_runner, "concrete")
    examples = make_examples(3)
    alias = next(iter(signature.input_spec))
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    got = servable.predict(signature, {alias: array})
    public = signature.function(**{alias: tf.constant(examples)})
    assert got.keys() == public.keys()
    for name, value in public.items():
        np.testing.assert_array_equal(got[name], value.numpy())


def test_inputs_the_stacked_call_cannot_take_get_tensorflows_own_error(servable: SavedModelServable) -> None:
    signature = servable.signature("predict_raw")
    ragged = {alias: np.ones(2 if i else 3, np.float32) for i, alias in enumerate(signature.sorted_aliases)}
    with pytest.raises(ServingError) as caught:  # lengths differ: no stacking, the flat call reports TF's error
        servable.predict(signature, ragged, checked=True)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "Dimension 0 in both shapes must be equal" in caught.value.message
