"""Drift between two data sets and two models' predictions: scores, overlay charts, HTML and JSON.

Inputs are StatisticsGen's statistics protos and arrays of predicted scores, so this module needs
no TFX and no metadata store (``evidence/governance.py`` gathers them). Numeric features are scored
with the Jensen-Shannon divergence of their histograms (base 2, 0..1), categorical ones with the
L-infinity distance of their value frequencies, as TFDV's drift comparators do.
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp
from tensorflow_metadata.proto.v0 import statistics_pb2

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TEMPLATES = Path(__file__).with_name("templates")
REPORT_JSON = "drift_report.json"
REPORT_HTML = "drift_report.html"
JENSEN_SHANNON_THRESHOLD = 0.1
L_INFINITY_THRESHOLD = 0.1
PREDICTION_THRESHOLD = 0.1
PREDICTION_BINS = 20
TOP_CATEGORIES = 15


@dataclass(frozen=True)
class Side:
    """One end of a comparison: a label for people and the statistics of its training split."""

    label: str
    statistics: statistics_pb2.DatasetFeatureStatistics
    description: str = ""


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical
    metric: str  # jensen_shannon | l_infinity
    score: float
    threshold: float
    chart: str = field(default="", repr=False)  # PNG data URI

    @property
    def drifted(self) -> bool:
        return self.score > self.threshold


@dataclass(frozen=True)
class PredictionShift:
    examples: int
    source: str
    mean_from: float
    mean_to: float
    jensen_shannon: float
    ks_statistic: float
    threshold: float
    chart: str = field(default="", repr=False)

    @property
    def drifted(self) -> bool:
        return self.jensen_shannon > self.threshold


@dataclass(frozen=True)
class DriftReport:
    model: str
    from_side: str
    to_side: str
    generated_at: str
    features: list[FeatureDrift]
    predictions: PredictionShift | None
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        def plain(item: Any) -> dict[str, Any]:
            data = {k: v for k, v in dataclasses.asdict(item).items() if k != "chart"}
            data["drifted"] = item.drifted
            return data

        return {"model": self.model, "from": self.from_side, "to": self.to_side, "generated_at": self.generated_at,
                "features": [plain(f) for f in self.features], "drifted_features": self.drifted,
                "predictions": plain(self.predictions) if self.predictions else None, "notes": self.notes}


def _name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    return ".".join(feature.path.step) if feature.path.step else feature.name


def _features(statistics: statistics_pb2.DatasetFeatureStatistics) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    return {_name(feature): feature for feature in statistics.features}


def _histogram(feature: statistics_pb2.FeatureNameStatistics) -> list[tuple[float, float, float]]:
    """(low, high, count) buckets, STANDARD (equal width) preferred over QUANTILES."""
    by_type = {h.type: h for h in feature.num_stats.histograms if h.buckets}
    histogram = by_type.get(statistics_pb2.Histogram.STANDARD) or by_type.get(statistics_pb2.Histogram.QUANTILES)
    if histogram is None:
        return []
    return [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]


def rebin(buckets: list[tuple[float, float, float]], edges: np.ndarray) -> np.ndarray:
    """Mass per cell of ``edges``, spreading each bucket uniformly over its range."""
    mass = np.zeros(len(edges) - 1)
    for low, high, count in buckets:
        if high <= low:  # a point mass: the cell holding it
            cell = min(max(int(np.searchsorted(edges, low, side="right")) - 1, 0), len(mass) - 1)
            mass[cell] += count
            continue
        overlap = np.clip(np.minimum(edges[1:], high) - np.maximum(edges[:-1], low), 0, None)
        mass += count * overlap / (high - low)
    return mass


def _normalized(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return values / total if total > 0 else values


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0: same distribution, 1: disjoint)."""
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    return float(jensenshannon(p, q, base=2) ** 2)


def numeric_drift(a: statistics_pb2.FeatureNameStatistics,
                  b: statistics_pb2.FeatureNameStatistics) -> tuple[float, np.ndarray, np.ndarray, np.ndarray] | None:
    buckets_a, buckets_b = _histogram(a), _histogram(b)
    if not buckets_a or not buckets_b:
        return None
    edges = np.unique([x for low, high, _ in buckets_a + buckets_b for x in (low, high)])
    if len(edges) < 2:  # both constant at the same value
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    p, q = _normalized(rebin(buckets_a, edges)), _normalized(rebin(buckets_b, edges))
    return js_divergence(p, q), edges, p, q


def _frequencies(feature: statistics_pb2.FeatureNameStatistics) -> dict[str, float]:
    string_stats = feature.string_stats
    buckets = [(b.label, b.sample_count) for b in string_stats.rank_histogram.buckets] or \
              [(v.value, v.frequency) for v in string_stats.top_values]
    total = string_stats.common_stats.num_non_missing * max(string_stats.common_stats.avg_num_values, 1.0) \
        or sum(count for _, count in buckets)
    return {label: count / total for label, count in buckets} if total else {}


def categorical_drift(a: statistics_pb2.FeatureNameStatistics,
                      b: statistics_pb2.FeatureNameStatistics) -> tuple[float, dict[str, float], dict[str, float]]:
    p, q = _frequencies(a), _frequencies(b)
    score = max((abs(p.get(v, 0.0) - q.get(v, 0.0)) for v in set(p) | set(q)), default=0.0)
    return float(score), p, q


def _png(figure: Figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure() -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(4.2, 2.4))


def _numeric_chart(title: str, edges: np.ndarray, p: np.ndarray, q: np.ndarray, labels: tuple[str, str]) -> str:
    figure, axes = _figure()
    for mass, label, color in ((p, labels[0], "tab:blue"), (q, labels[1], "tab:orange")):
        axes.stairs(mass, edges, label=label, color=color, fill=True, alpha=0.4)
    axes.set_title(title, fontsize=9)
    axes.set_ylabel("share", fontsize=8)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7)
    return _png(figure)


def _categorical_chart(title: str, p: dict[str, float], q: dict[str, float], labels: tuple[str, str]) -> str:
    values = sorted(set(p) | set(q), key=lambda v: -(p.get(v, 0.0) + q.get(v, 0.0)))[:TOP_CATEGORIES]
    x = np.arange(len(values))
    figure, axes = _figure()
    axes.bar(x - 0.2, [p.get(v, 0.0) for v in values], 0.4, label=labels[0], color="tab:blue")
    axes.bar(x + 0.2, [q.get(v, 0.0) for v in values], 0.4, label=labels[1], color="tab:orange")
    axes.set_xticks(x, [v[:12] for v in values], rotation=60, fontsize=6)
    axes.set_title(title, fontsize=9)
    axes.tick_params(labelsize=7)
    axes.legend(fontsize=7)
    return _png(figure)


def feature_drift(a: Side, b: Side, js_threshold: float = JENSEN_SHANNON_THRESHOLD,
                  linf_threshold: float = L_INFINITY_THRESHOLD,
                  excluded: Mapping[str, str] | None = None) -> tuple[list[FeatureDrift], list[str]]:
    """Scores and charts for every feature both sides have, except ``excluded`` (name -> reason, stated
    in a note); notes for those only one side has."""
    excluded = dict(excluded or {})
    features_a, features_b = _features(a.statistics), _features(b.statistics)
    labels = (a.label, b.label)
    results: list[FeatureDrift] = []
    skipped = sorted(set(excluded) & (set(features_a) | set(features_b)))
    features_a = {name: value for name, value in features_a.items() if name not in excluded}
    features_b = {name: value for name, value in features_b.items() if name not in excluded}
    for name in sorted(set(features_a) & set(features_b)):
        fa, fb = features_a[name], features_b[name]
        if fa.HasField("num_stats") and fb.HasField("num_stats"):
            scored = numeric_drift(fa, fb)
            if scored is None:
                continue
            score, edges, p, q = scored
            results.append(FeatureDrift(name, "numeric", "jensen_shannon", score, js_threshold,
                                        _numeric_chart(name, edges, p, q, labels)))
        elif fa.HasField("string_stats") and fb.HasField("string_stats"):
            score, frequency_a, frequency_b = categorical_drift(fa, fb)
            results.append(FeatureDrift(name, "categorical", "l_infinity", score, linf_threshold,
                                        _categorical_chart(name, frequency_a, frequency_b, labels)))
    notes = [f"feature {name} only in {side}" for side, names in
             ((a.label, set(features_a) - set(features_b)), (b.label, set(features_b) - set(features_a)))
             for name in sorted(names)]
    notes += [f"not scored: {name} ({excluded[name]})" for name in skipped]
    return results, notes


def prediction_shift(scores_from: np.ndarray, scores_to: np.ndarray, labels: tuple[str, str], source: str,
                     threshold: float = PREDICTION_THRESHOLD) -> PredictionShift:
    """How the distribution of predicted scores moved between the two models (or data sets)."""
    edges = np.linspace(0.0, 1.0, PREDICTION_BINS + 1)
    p = _normalized(np.histogram(np.clip(scores_from, 0, 1), bins=edges)[0].astype(float))
    q = _normalized(np.histogram(np.clip(scores_to, 0, 1), bins=edges)[0].astype(float))
    return PredictionShift(
        examples=len(scores_to), source=source, mean_from=float(np.mean(scores_from)),
        mean_to=float(np.mean(scores_to)), jensen_shannon=js_divergence(p, q),
        ks_statistic=float(ks_2samp(scores_from, scores_to).statistic), threshold=threshold,
        chart=_numeric_chart("predicted score", edges, p, q, labels))


def render_html(report: DriftReport) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                                     autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                                     lstrip_blocks=True)
    return environment.get_template("drift_report.html.j2").render(report=report)


def write_drift_report(report: DriftReport, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / REPORT_JSON, "html": folder / REPORT_HTML}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    paths["html"].write_text(render_html(report))
    return paths
