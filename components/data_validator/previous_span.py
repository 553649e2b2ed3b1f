"""Resolver strategy: the statistics of the span before the newest one, for span-to-span drift."""
from __future__ import annotations

from typing import Optional

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver


def previous_span(artifacts: list[types.Artifact]) -> list[types.Artifact]:
    """The newest artifact of the highest span below the newest span (empty for a first span)."""
    if not artifacts:
        return []
    newest = max(artifact.span for artifact in artifacts)
    older = [artifact for artifact in artifacts if artifact.span < newest]
    return [max(older, key=lambda artifact: (artifact.span, artifact.id))] if older else []


class PreviousSpanStrategy(resolver.ResolverStrategy):
    """Resolves each channel to its previous span's artifact, or to nothing on the first span."""

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: dict[str, list[types.Artifact]]
                          ) -> Optional[dict[str, list[types.Artifact]]]:
        return {key: previous_span(artifacts) for key, artifacts in input_dict.items()}
