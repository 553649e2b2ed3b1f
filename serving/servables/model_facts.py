"""What a SavedModel says about its own decisions, from ``assets.extra/esteira_model.json`` beside it.

The Trainer writes the file (models/common/explain.py): the decision threshold the Evaluator judged the
model at (``evaluation.decision_threshold``) and how its ``explain`` signature's outputs read as reason
codes. TF Serving's loader ignores ``assets.extra``; a model without the file keeps TF Serving's plain
rule (a probability of 0.5 or more is class 1) and has no reason texts.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FACTS_FILE = Path("assets.extra") / "esteira_model.json"
DEFAULT_THRESHOLD = None  # no threshold named: TF Serving's classifiers' rule, a probability >= 0.5 is class 1
EXPLAIN_SIGNATURE = "explain"

log = logging.getLogger("serving.models.manager")


@dataclass(frozen=True)
class ExplainedFeature:
    name: str
    output: str  # the explain signature's output holding its attribution
    raises: str  # the reason text when the attribution is positive
    lowers: str


@dataclass(frozen=True)
class ExplainFacts:
    method: str
    quadrature: str
    steps: int
    baseline: str
    top_k: int
    score: str
    baseline_score: str
    features: tuple[ExplainedFeature, ...] = field(default=())


@dataclass(frozen=True)
class ModelFacts:
    decision_threshold: float | None = DEFAULT_THRESHOLD
    explain: ExplainFacts | None = None
    source: str = ""  # the file read, "" when the model has none


def read_model_facts(model_path: str | Path) -> ModelFacts:
    """The facts file of one version; an unreadable file is logged and the defaults apply."""
    path = Path(model_path) / FACTS_FILE
    if not path.is_file():
        return ModelFacts()
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        threshold = float(document["decision_threshold"])
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"decision_threshold {threshold} is outside [0, 1]")
        explain = document.get("explain")
        facts = None
        if explain is not None:
            facts = ExplainFacts(
                method=str(explain["method"]), quadrature=str(explain["quadrature"]), steps=int(explain["steps"]),
                baseline=str(explain["baseline"]), top_k=int(explain["top_k"]), score=str(explain["score"]),
                baseline_score=str(explain["baseline_score"]),
                features=tuple(ExplainedFeature(str(f["name"]), str(f["output"]), str(f["raises"]), str(f["lowers"]))
                               for f in explain["features"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable (%s); serving with the rule probability >= 0.5 and no reason texts", path, exc)
        return ModelFacts()
    return ModelFacts(threshold, facts, str(path))
