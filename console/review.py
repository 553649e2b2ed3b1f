"""What each console page shows, assembled from the registry, MLMD, the reports and the server.

Functions here return plain dicts for the templates; the HTTP layer (app.py) only routes, checks
the caller and renders. A source that cannot answer becomes a message on the page, not an error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console import contests, evaluation_rows, model_server, registry, reports
from console.settings import ConsoleSettings
from tracking.registry import CHALLENGER, CHAMPION

NEUTRAL_METRICS = {"example_count", "weighted_example_count", "mean_label", "mean_prediction"}


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in ("loss", "error", "calibration"))


def worse(metric: str, challenger: float | None, champion: float | None) -> bool:
    """Is the challenger worse on ``metric``? Counts and means are neither better nor worse."""
    if challenger is None or champion is None or metric in NEUTRAL_METRICS:
        return False
    return challenger > champion if lower_is_better(metric) else challenger < champion


@dataclass
class Review:
    """One page view's sources: the registry read once, the server asked once."""

    settings: ConsoleSettings
    scores: evaluation_rows.ScoreCache

    def __post_init__(self) -> None:
        self.client = registry.open_client(self.settings.tracking_uri)
        self.versions = registry.version_facts(self.client, self.settings.model_name)
        self.server = model_server.server_state(self.settings.server_url, self.settings.model_name,
                                                self.settings.server_token)
        self.labels = model_server.version_labels(self.settings.model_config_file, self.settings.model_name)

    def labels_of(self, facts: registry.VersionFacts) -> list[str]:
        return sorted(label for label, version in self.labels.items() if str(version) == facts.serving_version)

    def serving_state(self, facts: registry.VersionFacts) -> str:
        if self.server.problem:
            return "server unreachable"
        return self.server.states.get(facts.serving_version, "not served")

    def by_alias(self, alias: str) -> registry.VersionFacts | None:
        return next((facts for facts in self.versions if alias in facts.aliases), None)

    # ---- pages -------------------------------------------------------------------------------

    def versions_page(self) -> dict[str, Any]:
        rows = [{"facts": facts, "labels": self.labels_of(facts), "state": self.serving_state(facts)}
                for facts in self.versions]
        return {"rows": rows, "server_problem": self.server.problem}

    def version_page(self, wanted: str) -> dict[str, Any]:
        facts = registry.find_version(self.versions, wanted)
        evaluation = registry.evaluation_metrics(self.client, facts.run_id)
        charts: dict[str, Any] = {"curves": registry.training_curves(self.client, facts)}
        evidence_problem = None
        try:
            rows = self._rows(facts)
            scores = self.scores.scores(self.settings.base_path, facts.serving_version, rows)
            charts["scores"] = {"rows": len(scores), "series": {facts.version: evaluation_rows.score_histogram(scores)}}
            if rows.labels is not None:
                charts["calibration"] = evaluation_rows.calibration(scores, rows.labels)
        except evaluation_rows.EvidenceUnavailable as error:
            evidence_problem = str(error)
        drift = model_server.live_drift(self.settings.server_url, self.settings.metrics_path,
                                        self.settings.model_name, self.settings.server_token)
        return {"facts": facts, "labels": self.labels_of(facts), "state": self.serving_state(facts),
                "overall": registry.overall(evaluation), "slices": registry.slices(evaluation),
                "charts": charts, "evidence_problem": evidence_problem, "server_problem": self.server.problem,
                "drift": dict(sorted(drift.get(facts.serving_version, {}).items(), key=lambda kv: -kv[1])),
                "reports": reports.reports_of(self.settings.reports_folder, facts.serving_version,
                                              self.settings.pipeline_reports)}

    def compare_page(self, challenger: str | None, champion: str | None) -> dict[str, Any]:
        a = registry.find_version(self.versions, challenger) if challenger else self.by_alias(CHALLENGER)
        b = registry.find_version(self.versions, champion) if champion else self.by_alias(CHAMPION)
        if a is None or b is None:
            missing = CHALLENGER if a is None else CHAMPION
            return {"missing": f"no version holds the {missing} alias yet; promote a version on the versions page, "
                               "or pick two versions to compare with ?challenger=V&champion=W"}
        eval_a = registry.evaluation_metrics(self.client, a.run_id)
        eval_b = registry.evaluation_metrics(self.client, b.run_id)
        overall_a, overall_b = registry.overall(eval_a), registry.overall(eval_b)
        metrics = [{"name": name, "a": overall_a.get(name), "b": overall_b.get(name),
                    "diff": _diff(overall_a.get(name), overall_b.get(name)),
                    "worse": worse(name, overall_a.get(name), overall_b.get(name))}
                   for name in sorted(set(overall_a) | set(overall_b))]
        slices_a, slices_b = registry.slices(eval_a), registry.slices(eval_b)
        slice_rows = []
        for where in sorted(set(slices_a) | set(slices_b)):
            values_a, values_b = slices_a.get(where, {}), slices_b.get(where, {})
            for name in sorted(set(values_a) | set(values_b)):
                slice_rows.append({"slice": where, "name": name, "a": values_a.get(name), "b": values_b.get(name),
                                   "diff": _diff(values_a.get(name), values_b.get(name)),
                                   "worse": worse(name, values_a.get(name), values_b.get(name))})
        charts: dict[str, Any] = {}
        evidence_problem = None
        try:
            rows = self._rows(a)
            series = {}
            for facts in (a, b):
                scores = self.scores.scores(self.settings.base_path, facts.serving_version, rows)
                series[facts.version] = evaluation_rows.score_histogram(scores)
            charts["scores"] = {"rows": len(rows.records), "series": series}
        except evaluation_rows.EvidenceUnavailable as error:
            evidence_problem = str(error)
        return {"a": a, "b": b, "metrics": metrics, "slices": slice_rows, "charts": charts,
                "evidence_problem": evidence_problem, "examples_id": a.examples_id}

    def predict_form(self) -> dict[str, Any]:
        """The fields of one eval row (its values as defaults) and the versions that will answer."""
        targets = self._targets()
        source = targets[0] if targets else (self.versions[0] if self.versions else None)
        fields: dict[str, tuple[str, str]] = {}
        problem = None
        if source is not None:
            try:
                rows = self._rows(source, limit=1)
                fields = model_server.feature_kinds(rows.records[0], self.settings.label_key) if rows.records else {}
            except evaluation_rows.EvidenceUnavailable as error:
                problem = f"the form needs one eval row to know the features: {error}"
        return {"fields": fields, "targets": targets, "problem": problem, "server_problem": self.server.problem}

    def predict(self, values: dict[str, str]) -> dict[str, Any]:
        page = self.predict_form()
        kinds = {name: kind for name, (kind, _default) in page["fields"].items()}
        unknown = sorted(set(values) - set(kinds))
        if unknown:
            raise ValueError(f"unknown feature(s) {', '.join(unknown)}; use the fields of the form")
        missing = sorted(set(kinds) - set(values))
        if missing:
            raise ValueError(f"missing value(s) for {', '.join(missing)}; fill in every field")
        record = model_server.example_from_values(values, kinds)
        page["fields"] = {name: (kind, values[name]) for name, kind in kinds.items()}
        page["answers"] = [(facts, model_server.predict(self.settings.server_url, self.settings.model_name,
                                                        facts.serving_version, record, self.settings.server_token))
                           for facts in page["targets"]]
        return page

    def _targets(self) -> list[registry.VersionFacts]:
        """Challenger and champion (once each), the versions a reviewer weighs against each other."""
        found = [self.by_alias(CHALLENGER), self.by_alias(CHAMPION)]
        unique = []
        for facts in found:
            if facts is not None and facts not in unique:
                unique.append(facts)
        return unique

    def _rows(self, facts: registry.VersionFacts, limit: int | None = None) -> evaluation_rows.EvalRows:
        return evaluation_rows.load_eval_rows(self.settings.metadata_path, facts.examples_id, self.settings.label_key,
                                              limit or self.settings.eval_rows)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def contest_page(settings: ConsoleSettings, request_id: str | None) -> dict[str, Any]:
    """The review channel: the open contests, and one decision looked up by its request id (the version that
    answered, the pseudonymized inputs, the score, the explanation, the decision's audit line, the case so far)."""
    context: dict[str, Any] = {"open_cases": contests.open_cases(settings.audit_log), "request_id": request_id,
                               "outcomes": contests.OUTCOMES}
    if not request_id:
        return context
    explained = contests.explain_decision(settings.server_url, settings.model_name, request_id, settings.server_token)
    audit_line = contests.decision_audit_line(settings.access_audit_logs, request_id)
    events = contests.case_events(settings.audit_log, request_id)
    context.update(explained=explained, audit_line=audit_line, events=events,
                   contested=any(e["event"] == contests.CONTESTED for e in events),
                   reviewed=next((e for e in events if e["event"] == contests.REVIEWED), None))
    return context
