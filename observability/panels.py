"""The model-server dashboard as data: rows, panels and PromQL, shared by Grafana and the static page.

One definition feeds both renderers (``observability.grafana`` and ``observability.static_page``) and
the live test that runs every query against Prometheus, so the three cannot disagree. Queries use
Grafana's variables (``$model``, ``$version``, ``$feature``) and interval macros
(``$__rate_interval``, ``$__range``); :func:`expand` gives them values outside Grafana.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

PanelKind = Literal["timeseries", "histogram", "state"]

INFERENCE_APIS = "predict|classify|regress|multi_inference"
SERVER_ERROR_CODES = "UNKNOWN|DEADLINE_EXCEEDED|UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS"
SELECTED = 'model=~"$model",version=~"$version"'
SERVER_JOBS = 'job=~"esteira-.*"'
TF_SELECTED = 'model_name=~"$model",version=~"$version"'  # TF Serving's families, with Esteira's version label


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """``unit`` is a Grafana unit id; ``histogram`` panels show cumulative ``le`` buckets as bars."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: PanelKind = "timeseries"


@dataclass(frozen=True)
class Row:
    """``repeat`` names a variable: the row is drawn once per value (one row per input feature)."""

    title: str
    panels: tuple[Panel, ...]
    repeat: str | None = None


@dataclass(frozen=True)
class Variable:
    """A label's values on a metric, as Grafana's ``label_values(metric{...}, label)``."""

    name: str
    label: str
    metric: str
    matchers: str = ""
    multi: bool = True

    @property
    def grafana_query(self) -> str:
        selector = f"{self.metric}{{{self.matchers}}}" if self.matchers else self.metric
        return f"label_values({selector}, {self.label})"


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...] = field(default_factory=tuple)

    def panels(self) -> list[Panel]:
        return [panel for row in self.rows for panel in row.panels]


def _quantiles(metric: str, matchers: str, by: str) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{matchers}}}[$__rate_interval])))",
            "{{" + by.replace(", ", "}} v{{") + "}} " + name,
        )
        for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))
    )


_TRAFFIC = Row("Traffic and latency", (
    Panel("Request rate", "Inference and model API requests per second, per model, version and API.", "reqps", (
        Query(f"sum by (model, version, api) (rate(esteira_requests_total{{{SELECTED}}}[$__rate_interval]))",
              "{{model}} v{{version}} {{api}}"),
    )),
    Panel("Inference latency p50 / p95 / p99", "Server-side latency of successful inference calls.", "s",
          _quantiles("esteira_request_duration_seconds", f'{SELECTED},api=~"{INFERENCE_APIS}"', "model, version")),
    Panel("Requests routed by version label", "Requests without a version, split by the canary router.", "reqps", (
        Query('sum by (model, label) (rate(esteira_canary_routed_total{model=~"$model"}[$__rate_interval]))',
              "{{model}} {{label}}"),
    )),
    Panel("p99 latency by version label", "Canary against stable (needs esteira_model_version_label_info).", "s", (
        Query('model_label:esteira_request_duration_seconds:p99_5m{model=~"$model"}', "{{model}} {{label}}"),
    )),
))

_TF_SERVING = Row("TF Serving's families per version", (
    Panel("Request count per version", "TF Serving's :tensorflow:serving:request_count per status, split by the "
          "version label Esteira adds (TF Serving's own server exports no version).", "reqps", (
              Query(f"sum by (model_name, version, status) (rate(:tensorflow:serving:request_count"
                    f"{{{TF_SELECTED}}}[$__rate_interval]))", "{{model_name}} v{{version}} {{status}}"),
          )),
    Panel("Request latency per version", "TF Serving's :tensorflow:serving:request_latency (microseconds) of "
          "successful inference calls, per version and entrypoint.", "µs",
          tuple(Query(f"histogram_quantile({q}, sum by (model_name, version, entrypoint, le) (rate("
                      f":tensorflow:serving:request_latency_bucket{{{TF_SELECTED},API=~\"(?i){INFERENCE_APIS}\"}}"
                      f"[$__rate_interval])))", "{{model_name}} v{{version}} {{entrypoint}} " + name)
                for q, name in ((0.5, "p50"), (0.99, "p99")))),
    Panel("Build", "esteira_build_info: the Esteira release, git commit and TensorFlow release each server runs.",
          "short", (
              Query("max by (job, instance, version, git_commit, tensorflow_version) "
                    f"(esteira_build_info{{{SERVER_JOBS}}})",
                    "{{job}} {{instance}} esteira {{version}} ({{git_commit}}) TF {{tensorflow_version}}"),
          ), kind="state"),
))

_ERRORS = Row("Errors", (
    Panel("Errors by status code", "Requests that did not answer OK, by canonical status code.", "reqps", (
        Query(f'sum by (model, code) (rate(esteira_requests_total{{{SELECTED},code!="OK"}}[$__rate_interval]))',
              "{{model}} {{code}}"),
    )),
    Panel("Server error ratio (5xx)", "Share of inference requests failing with a server error (alert at 1%).",
          "percentunit", (
              Query(f"model_version:esteira_requests_5xx:ratio5m{{{SELECTED}}}", "{{model}} v{{version}}"),
          )),
    Panel("Error rate per true class", "Share of a class's labelled rows predicted as another class, from "
          "feedback (alert at 30%).", "percentunit", (
              Query(f"model_version_class:esteira_feedback_errors:ratio10m{{{SELECTED}}}",
                    "{{model}} v{{version}} class {{true_class}}"),
          )),
    Panel("Feedback labels per class", "Late labels joined to predictions, by true and predicted class.", "reqps", (
        Query(f"sum by (version, true_class, predicted_class) (rate(esteira_feedback_total{{{SELECTED}}}"
              "[$__rate_interval]))", "v{{version}} true {{true_class}} predicted {{predicted_class}}"),
    )),
))

_PREDICTIONS = Row("Predictions", (
    Panel("Predicted class share", "Share of predicted rows per class (argmax, or 0/1 at 0.5).", "percentunit", (
        Query(f"sum by (model, version, class) (rate(esteira_predictions_total{{{SELECTED}}}[$__rate_interval]))"
              f" / ignoring (class) group_left sum by (model, version) (rate(esteira_predictions_total"
              f"{{{SELECTED}}}[$__rate_interval]))", "{{model}} v{{version}} class {{class}}"),
    )),
    Panel("Prediction score quantiles", "p10 / p50 / p90 of the predicted score over time (needs "
          "esteira_prediction_score).", "short",
          tuple(Query(f"histogram_quantile({q}, sum by (model, version, le) (rate(esteira_prediction_score_bucket"
                      f"{{{SELECTED}}}[$__rate_interval])))", "{{model}} v{{version}} " + name)
                for q, name in ((0.1, "p10"), (0.5, "p50"), (0.9, "p90")))),
    Panel("Prediction shift against the last 6 hours", "Class share over 10 minutes minus over 6 hours "
          "(alert at 0.15).", "percentunit", (
              Query(f"model_version_class:esteira_predictions:share10m{{{SELECTED}}} - "
                    f"model_version_class:esteira_predictions:share6h{{{SELECTED}}}",
                    "{{model}} v{{version}} class {{class}}"),
          )),
))

_DRIFT = Row("Input feature $feature: served against training", (
    Panel("PSI against the training reference", "Population Stability Index of served inputs (alert over 0.2).",
          "short", (
              Query(f'esteira_feature_drift_psi{{{SELECTED},feature=~"$feature"}}', "v{{version}} {{feature}}"),
          )),
    Panel("Served histogram", "Served values in the training reference's buckets (cumulative counts by le).",
          "short", (
              Query(f'sum by (le) (esteira_input_feature_value_bucket{{{SELECTED},feature=~"$feature"}})', "{{le}}"),
          ), kind="histogram"),
    Panel("Training histogram", "The version's reference histogram (cumulative share by le).", "short", (
        Query(f'max by (le) (esteira_input_feature_reference_share{{{SELECTED},feature=~"$feature"}})', "{{le}}"),
    ), kind="histogram"),
), repeat="feature")

_PROCESS = Row("Server process", (
    Panel("CPU", "CPU seconds per second of the server process (1 = one core).", "short", (
        Query(f"rate(process_cpu_seconds_total{{{SERVER_JOBS}}}[$__rate_interval])", "{{job}} {{instance}}"),
    )),
    Panel("Resident memory", "Resident set size of the server process.", "bytes", (
        Query(f"process_resident_memory_bytes{{{SERVER_JOBS}}}", "{{job}} {{instance}}"),
    )),
    Panel("Threads", "OS threads of the server process.", "short", (
        Query(f"process_threads{{{SERVER_JOBS}}}", "{{job}} {{instance}}"),
    )),
))

_BATCHING = Row("Batching", (
    Panel("Inference request size", "Request body bytes per inference call.", "bytes",
          _quantiles("esteira_request_size_bytes", 'model=~"$model"', "model")),
    Panel("Processed batch size", "Rows per batch the session ran (with --enable_batching).", "short",
          _quantiles(":tensorflow:serving:batching_session:processed_batch_size", SERVER_JOBS, "job")),
))

_VERSIONS = Row("Versions", (
    Panel("Version state", "1 while a version is AVAILABLE, 0 while it loads, fails or unloads.", "short", (
        Query('esteira_model_version_available{model=~"$model"}', "{{model}} v{{version}}"),
    ), kind="state"),
    Panel("Version load time", "Seconds from load start to AVAILABLE, warm-up included.", "s", (
        Query('esteira_model_load_seconds{model=~"$model"}', "{{model}} v{{version}}"),
    )),
))

DASHBOARD = Dashboard(
    uid="esteira-model-server",
    title="Esteira model server",
    description="Traffic, latency, errors, error rate per class, predictions, input drift against training, "
                "process and versions of the Esteira / TF Serving model server.",
    variables=(
        Variable("model", "model", "esteira_model_version_available", multi=False),
        Variable("version", "version", "esteira_model_version_available", 'model=~"$model"'),
        Variable("feature", "feature", "esteira_feature_drift_psi", SELECTED),
    ),
    rows=(_TRAFFIC, _ERRORS, _PREDICTIONS, _DRIFT, _TF_SERVING, _PROCESS, _BATCHING, _VERSIONS),
)

_MACRO = re.compile(r"\$(__rate_interval|__interval|__range|[A-Za-z_]\w*)")


def expand(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` variables and ``$__*`` macros (values are inserted as given)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}; pass it in values")
        return values[name]

    return _MACRO.sub(replace, expr)
