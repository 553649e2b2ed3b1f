"""Resolver strategy: the statistics of the span before the newest one, for span-to-span drift."""
from __future__ import annotations

import ml_metadata as mlmd
from tfx import types
from tfx.dsl.components.common import resolver


def previous_span(artifacts: list[types.Artifact]) -> list[types.Artifact]:
    """The newest artifact of the highest span below the newest span (empty for a first span).

    An ExampleGen that records no span leaves every artifact at span 0; then the previous artifact
    (by id) stands for the previous span, i.e. the data the pipeline saw before the current data.
    """
    if not artifacts:
        return []
    newest = max(artifacts, key=lambda artifact: (artifact.span, artifact.id))
    if newest.span == 0:
        older = [artifact for artifact in artifacts if artifact.id < newest.id]
    else:
        older = [artifact for artifact in artifacts if artifact.span < newest.span]
    return [max(older, key=lambda artifact: (artifact.span, artifact.id))] if older else []


class PreviousSpanStrategy(resolver.ResolverStrategy):
    """Resolves each channel to its previous span's artifact, or to nothing on the first span."""

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: dict[str, list[types.Artifact]]
                          ) -> dict[str, list[types.Artifact]] | None:
        return {key: previous_span(artifacts) for key, artifacts in input_dict.items()}
