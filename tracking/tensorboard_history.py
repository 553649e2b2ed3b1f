"""Per-epoch training curves read back from the Keras TensorBoard callback's event files."""
from __future__ import annotations

from pathlib import Path

EPOCH_PREFIX = "epoch_"


def epoch_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """{'train.loss': [(0, 0.61), (1, 0.42)], 'validation.auc': [...]} from ``<logdir>/<phase>/``."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    history: dict[str, list[tuple[int, float]]] = {}
    for phase in ("train", "validation"):
        folder = logdir / phase
        if not folder.is_dir():
            continue
        events = event_accumulator.EventAccumulator(
            str(folder), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
        events.Reload()
        tags = events.Tags()
        for tag in tags.get(event_accumulator.TENSORS, []):
            if tag.startswith(EPOCH_PREFIX):
                history[f"{phase}.{tag.removeprefix(EPOCH_PREFIX)}"] = [
                    (event.step, float(tensor_util.make_ndarray(event.tensor_proto)))
                    for event in events.Tensors(tag)]
        for tag in tags.get(event_accumulator.SCALARS, []):
            if tag.startswith(EPOCH_PREFIX):
                history[f"{phase}.{tag.removeprefix(EPOCH_PREFIX)}"] = [
                    (event.step, float(event.value)) for event in events.Scalars(tag)]
    return history
