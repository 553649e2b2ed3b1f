"""Typed use-case configuration: one YAML file per use case, validated before any TFX work starts.

Every error names the offending key (or path) and what is allowed, in one line, so a typo in a
config never surfaces as a stack trace twenty minutes into a pipeline run.
"""
from __future__ import annotations

import csv
import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from components.anonymizing_example_gen.feature_settings import SequenceFeaturesConfig, WindowFeaturesConfig
from errors import ConfigError  # the project's one configuration error, raised and re-exported here
from models.common.settings import (
    DataSettings,
    ModelSettings,
    SettingsError,
    TrainerSettings,
    TrainingSettings,
    _allowed_keys,
    check_steps_cover_epochs,
    describe_validation_error,
    settings_schema,
)
from optimization.settings import OptimizationSettings
from pipeline.beam_engines import (
    OBJECT_STORE_URI,
    DataflowEngine,
    EngineError,
    EngineName,
    FlinkEngine,
    SparkEngine,
    merge_args,
)
from privacy.errors import PrivacyError
from privacy.policy import DropColumn, PrivacyPolicy, PseudonymizeColumn


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeSplitConfig(_Section):
    """An out-of-time split: train on `train_days`, skip `delay_days`, evaluate on `eval_days`.

    The windows follow each other ending on `end_span`, so they cannot overlap; one span is one day.
    """

    kind: Literal["time"]
    train_days: int = Field(ge=1, description="days (spans) of training rows")
    delay_days: int = Field(
        ge=0, description="days skipped between train and eval because their labels are not known yet "
                          "(a negative delay would overlap the windows)")
    eval_days: int = Field(ge=1, description="days (spans) of evaluation rows")
    end_span: int | None = Field(default=None, ge=0, description="last eval span (null: the latest span)")

    @property
    def total_days(self) -> int:
        return self.train_days + self.delay_days + self.eval_days


_HASH_SPLIT = TypeAdapter(dict[str, int])


class DataConfig(DataSettings):
    """Where the raw data lives and what its columns mean (label and features: models/common/settings.py)."""

    source: Path = Field(description="folder of CSV files read by ExampleGen")
    input_pattern: str = Field(
        default="*.csv",
        description="files under source; '{SPAN:4}' marks a span number, e.g. 'span-{SPAN:4}/*.csv' "
                    "(the latest span is read)")
    partition_feature: str | None = Field(
        default=None, description="split by this column's hash (e.g. card_id) instead of the whole example")
    split: TimeSplitConfig | dict[str, int] = Field(
        default={"train": 4, "eval": 1},
        description="output split name -> hash buckets, with 'train' and 'eval'; or an out-of-time split "
                    "{kind: time, train_days, delay_days, eval_days, end_span}")
    create_command: str | None = Field(
        default=None,
        description="the command that writes this use case's data; '{source}' stands for data.source, "
                    "e.g. 'esteira data breast-cancer --out {source}' (named when the folder is missing)")

    @field_validator("split", mode="wrap")
    @classmethod
    def _split_kind(cls, value: Any, handler: Any) -> TimeSplitConfig | dict[str, int]:
        """A mapping with `kind` is a time split, any other a hash split: errors name the keys of the one meant."""
        if isinstance(value, TimeSplitConfig) or (isinstance(value, dict) and "kind" in value):
            return TimeSplitConfig.model_validate(value)
        return _HASH_SPLIT.validate_python(value)

    @field_validator("split")
    @classmethod
    def _split_has_train_and_eval(cls, value: TimeSplitConfig | dict[str, int]) -> TimeSplitConfig | dict[str, int]:
        if isinstance(value, TimeSplitConfig):
            return value
        missing = {"train", "eval"} - set(value)
        if missing:
            raise ValueError(f"missing split(s) {sorted(missing)}; splits need 'train' and 'eval'")
        if any(buckets < 1 for buckets in value.values()):
            raise ValueError("hash buckets must be positive integers")
        return value

    @field_validator("create_command")
    @classmethod
    def _command_formats(cls, value: str | None) -> str | None:
        try:
            None if value is None else value.format(source="data")
        except (KeyError, IndexError, ValueError):
            raise ValueError("may contain only the placeholder '{source}'; double other braces ({{ }})") from None
        return value

    @model_validator(mode="after")
    def _time_split_needs_spans(self) -> DataConfig:
        if isinstance(self.split, TimeSplitConfig):
            if not re.search(r"\{SPAN(:\d+)?\}", self.input_pattern):
                raise ValueError(f"data.split: a time split reads spans; data.input_pattern {self.input_pattern!r} "
                                 "needs a span placeholder, e.g. 'span-{SPAN:4}/*.csv'")
            if self.partition_feature:
                raise ValueError("data.partition_feature: a time split divides rows by day, not by a feature's "
                                 "hash; remove partition_feature")
        return self

    @property
    def time_split(self) -> TimeSplitConfig | None:
        return self.split if isinstance(self.split, TimeSplitConfig) else None


class ModelConfig(ModelSettings):
    """Which model module trains the use case; its hyper-parameters are models/common/settings.py's."""

    module: str = Field(default="models.tabular", description="package with preprocessing_fn and run_fn")


class TrainingConfig(TrainingSettings):
    """run_fn's settings plus the step counts TFX hands the Trainer (TrainArgs, EvalArgs)."""

    train_steps: int = Field(default=500, ge=1, description="optimizer steps in total, over all epochs")
    eval_steps: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _steps_cover_epochs(self) -> TrainingConfig:
        check_steps_cover_epochs(self.train_steps, self.epochs)
        return self


BUILT_IN_METRICS = ("auc", "auc_precision_recall", "binary_accuracy", "precision", "recall")
_AUC_GATE_KEYS = {"auc_lower_bound": 0.9, "auc_change_threshold": -0.01, "auc_relative_improvement": None,
                  "champion_auc_margin": 0.0}


class GateConfig(_Section):
    """The promotion gate on one metric the Evaluator reports (higher is better for all of them)."""

    metric: str = Field(default="auc", description="e.g. auc, average_precision, card_precision_at_100")
    lower_bound: float | None = Field(default=None, ge=0.0, le=1.0, description="absolute floor on the eval split")
    change_threshold: float | None = Field(
        default=None, ge=-1.0, le=1.0,
        description="smallest allowed difference candidate - blessed baseline; -0.02 tolerates a 0.02 drop")
    relative_improvement: float | None = Field(
        default=None, gt=-1.0, le=1.0,
        description="smallest relative change (candidate - baseline) / baseline, e.g. 0.01: beat it by 1 %")
    champion_margin: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="the deploy gate (`esteira gate`): the candidate must reach the champion's value plus this")

    @model_validator(mode="after")
    def _checks_something(self) -> GateConfig:
        if self.lower_bound is None and self.change_threshold is None and self.relative_improvement is None:
            raise ValueError("evaluation.gate checks nothing: set lower_bound, change_threshold or "
                             "relative_improvement")
        return self


class EvaluationConfig(_Section):
    """The Evaluator's metrics and its promotion gate: a floor on one metric and the allowed change versus
    the blessed baseline. The auc_* keys are the gate on AUC; evaluation.gate puts it on any metric."""

    auc_lower_bound: float = Field(default=0.9, ge=0.0, le=1.0)
    auc_change_threshold: float = Field(
        default=-0.01, le=0.0,
        description="smallest allowed AUC difference (candidate - baseline); -0.01 tolerates a 0.01 drop")
    auc_relative_improvement: float | None = Field(
        default=None, gt=-1.0, le=1.0,
        description="smallest relative AUC change (candidate - baseline) / baseline, e.g. 0.01: the candidate "
                    "must beat the blessed baseline by 1 %; checked besides auc_change_threshold; "
                    "null: no relative gate")
    champion_auc_margin: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="the deploy gate (`esteira gate`, CI's model gate): the candidate's AUC must be at least "
                    "the champion's (the blessed baseline) plus this margin, e.g. 0.005")
    gate: GateConfig | None = Field(
        default=None, description="the promotion gate on any reported metric, e.g. {metric: average_precision, "
                                  "lower_bound: 0.5, change_threshold: -0.02}; replaces the auc_* keys")
    slice_features: list[str] = Field(
        default=[], description="features to slice metrics by (transformed ones too with transform_signature)")
    recall_at_false_positive_rates: list[float] = Field(
        default=[], description="report recall at these false-positive rates, e.g. [0.01]")
    card_key: str | None = Field(
        default=None, description="feature naming each example's card: reports Card Precision@k "
                                  "(card_precision_at_<k>) with time_key; null: not reported")
    time_key: str | None = Field(
        default=None, description="int64 epoch-seconds feature; its UTC day is the day of the per-day metrics")
    card_precision_k: int = Field(
        default=100, ge=1, description="cards investigators check per day (the Fraud Detection Handbook's k)")
    alerts_per_day: list[int] = Field(
        default=[], description="report recall when only this many top-scored transactions a day are alerted "
                                "(recall_at_<n>_alerts_per_day), e.g. [100]; needs time_key")
    transform_signature: str | None = Field(
        default=None, description="model signature TFMA runs first so slices can use transformed features")
    decision_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="score above which a prediction is acted on (an alert); the fairness rates are measured at "
                    "it. The model server counts classes at 0.5 (esteira_predictions_total)")
    max_false_positive_rate_gap: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="the fairness gate: the largest false-positive-rate gap between the groups of any "
                    "governance.protected_attributes may be at most this, e.g. 0.02 (null: reported, not gated)")

    @field_validator("recall_at_false_positive_rates")
    @classmethod
    def _rates_in_unit_interval(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < rate < 1.0 for rate in value):
            raise ValueError("false-positive rates must be between 0 and 1 (exclusive)")
        return value

    @field_validator("alerts_per_day")
    @classmethod
    def _budgets_are_positive(cls, value: list[int]) -> list[int]:
        if any(budget < 1 for budget in value) or len(set(value)) != len(value):
            raise ValueError("alerts per day must be distinct integers >= 1, e.g. [50, 100]")
        return value

    @model_validator(mode="after")
    def _gate_names_a_reported_metric(self) -> EvaluationConfig:
        if self.card_key and not self.time_key:
            raise ValueError("evaluation.card_key needs evaluation.time_key: Card Precision@k ranks cards per day "
                             "(e.g. time_key: timestamp)")
        if self.alerts_per_day and not self.time_key:
            raise ValueError("evaluation.alerts_per_day needs evaluation.time_key, the timestamp feature that "
                             "gives each example its day (e.g. time_key: timestamp)")
        if self.card_precision_k != 100 and not self.card_key:
            raise ValueError("evaluation.card_precision_k needs evaluation.card_key and evaluation.time_key "
                             "(e.g. card_key: card_id, time_key: timestamp)")
        if self.gate is None:
            return self
        moved = [key for key, default in _AUC_GATE_KEYS.items() if getattr(self, key) != default]
        if moved:
            raise ValueError(f"evaluation.{', evaluation.'.join(moved)} {'applies' if len(moved) == 1 else 'apply'} "
                             "only without evaluation.gate: "
                             f"put the thresholds in evaluation.gate (metric: auc for AUC) and remove them")
        if self.gate.metric not in self.metric_names():
            hint = (" (card_precision_at_<k>, recall_at_fpr_<rate> and recall_at_<n>_alerts_per_day exist once "
                    "evaluation.card_key, recall_at_false_positive_rates or alerts_per_day configure them)")
            raise ValueError(f"evaluation.gate.metric: unknown metric {self.gate.metric!r}; allowed: "
                             f"{', '.join(self.metric_names())}{hint}")
        return self

    def recall_at_fpr_name(self, rate: float) -> str:
        return f"recall_at_fpr_{rate:g}"

    def card_precision_name(self) -> str | None:
        return f"card_precision_at_{self.card_precision_k}" if self.card_key else None

    def alert_budget_names(self) -> list[str]:
        return [f"recall_at_{budget}_alerts_per_day" for budget in self.alerts_per_day]

    def metric_names(self) -> list[str]:
        """Every metric the Evaluator reports and a gate may name, as TFMA records it."""
        return [*BUILT_IN_METRICS, *(self.recall_at_fpr_name(rate) for rate in self.recall_at_false_positive_rates),
                "average_precision", *filter(None, [self.card_precision_name()]), *self.alert_budget_names()]

    def promotion_gate(self) -> GateConfig:
        """evaluation.gate, or the gate on AUC the auc_* keys describe."""
        return self.gate or GateConfig(
            metric="auc", lower_bound=self.auc_lower_bound, change_threshold=self.auc_change_threshold,
            relative_improvement=self.auc_relative_improvement, champion_margin=self.champion_auc_margin)


class ValidationConfig(_Section):
    """The data gate before Transform: schema anomalies and span-to-span drift (TFDV comparators)."""

    on_anomaly: Literal["fail", "warn"] = Field(
        default="warn", description="fail: stop the pipeline before Transform, listing each anomaly; "
                                    "warn: record the anomalies and go on")
    schema_file: Path | None = Field(
        default=None,
        description="curated schema (`esteira schema freeze` writes it); when the file exists the pipeline "
                    "imports it instead of inferring one (default: schemas/<serving.model_name>/schema.pbtxt "
                    "beside the config file)")
    categorical_drift_threshold: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="largest L-infinity distance between a string feature's value shares in the current "
                    "span and the previous one; null: not compared")
    numeric_drift_threshold: float | None = Field(
        default=None, gt=0.0, le=1.0,
        description="largest Jensen-Shannon divergence between a numeric feature's histograms in the "
                    "current span and the previous one; null: not compared")
    drift_skip_features: list[str] = Field(
        default=[], description="columns never compared across spans because they move by design "
                                "(timestamps, ids)")


class ModelValidationConfig(_Section):
    """The ModelValidator before the Pusher: finite weights, a real Predict within budget, agreeing signatures."""

    latency_budget_ms: float = Field(
        default=500.0, gt=0.0,
        description="slowest allowed one-row Predict (95th percentile over the sample), through the model server")
    sample_size: int = Field(default=20, ge=1, le=1000, description="eval rows sent, one request each per signature")
    startup_timeout_s: float = Field(default=120.0, gt=0.0,
                                     description="time the model server gets to load the candidate")
    signature_tolerance: float = Field(
        default=1e-4, gt=0.0, description="largest allowed probability difference between two signatures")


class ServingConfig(_Section):
    model_name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    base_path: Path = Field(description="versioned SavedModels are pushed to <base_path>/<version>/")


class RunnerConfig(_Section):
    """How to run the pipeline; beam_args are deliberate because non-empty ones trigger an sdist per
    Beam component in TFX 1.21 and an empty list makes Beam 2.77 try to download its Prism runner.
    A cluster engine's section expands to its runner's arguments (pipeline/beam_engines.py), which
    beam_args then holds, followed by the config's own."""

    default: Literal["local", "beam"] = "local"
    engine: EngineName = Field(default="direct", description="where Beam runs: direct (this machine), flink, "
                                                             "spark or dataflow (its section says how)")
    flink: FlinkEngine | None = None
    spark: SparkEngine | None = None
    dataflow: DataflowEngine | None = None
    beam_args: list[str] = Field(default=["--runner=FnApiRunner"])
    kubeflow_image: str = Field(default="esteira/pipeline:latest",
                                description="container image Kubeflow runs each component in")

    _own_beam_args: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _no_direct_default_on_a_cluster(cls, data: Any) -> Any:
        """The default beam_args name the in-process runner; a cluster engine starts from none."""
        if isinstance(data, dict) and data.get("engine", "direct") != "direct" and "beam_args" not in data:
            return {**data, "beam_args": []}
        return data

    @model_validator(mode="after")
    def _engine_args_first(self) -> RunnerConfig:
        """beam_args become the engine's arguments, then the config's own (kept apart for a dump)."""
        self._own_beam_args = list(self.beam_args)
        if self.engine == "direct":
            return self
        section = getattr(self, self.engine)
        if section is None:
            needed = {"flink": "job_endpoint, sdk_container_image, parallelism",
                      "spark": "job_endpoint, sdk_container_image",
                      "dataflow": "project, region, temp_location, sdk_container_image"}[self.engine]
            raise ValueError(f"runner.engine: {self.engine} needs a runner.{self.engine} section with {needed} "
                             f"(README: Beam on a cluster)")
        try:
            merged = merge_args(self.engine, section.args(), self.beam_args)
        except EngineError as error:
            raise ValueError(str(error)) from None
        self.__dict__["beam_args"] = merged  # frozen for callers; set once, here, while validating
        return self

    @field_serializer("beam_args")
    def _dump_own_beam_args(self, _expanded: list[str]) -> list[str]:
        """A dump holds what the config said, so it validates again to this (with_overrides)."""
        return self._own_beam_args


class TrackingConfig(_Section):
    """Where the MLflow logger records each run; MLFLOW_TRACKING_URI, when set, wins over ``uri``."""

    uri: str | None = Field(
        default=None,
        description="MLflow tracking URI, e.g. http://mlflow.team:5000 "
                    "(default: sqlite store and artifact folder under <pipeline.root>/mlflow)")
    required: bool = Field(
        default=True, description="false: an unreachable tracking server is a warning, not a failed run")
    experiment: str | None = Field(default=None, description="MLflow experiment (default: pipeline.name)")


class RetentionSchedule(_Section):
    """How long each store of personal data is kept, then what happens (LGPD art. 15-16), as the controller
    declares it for the LGPD report."""

    training_data: str = Field(min_length=1, description="e.g. 'anonymized examples: 5 years, then deleted'")
    prediction_memory: str = Field(
        min_length=1, description="the model server's memory of recent predictions for feedback, e.g. '24 hours "
                                  "(--feedback_ttl_seconds 86400), in memory only'")
    audit_logs: str = Field(min_length=1, description="the access audit logs, e.g. '5 years (CMN 4.893/2021)'")


class GovernanceConfig(_Section):
    """What the LGPD compliance report states about the processing (Lei 13.709/2018, art. 7 and 37).

    Facts about the data and the model come from MLMD; these are the controller's declarations that
    no artifact can hold, plus where the serving access audit logs live.
    """

    legal_basis: str = Field(min_length=1, description="LGPD art. 7 basis, e.g. 'legitimate interest (art. 7, IX)'")
    purpose: str = Field(min_length=1, description="why the personal data is processed, e.g. 'card-fraud prevention'")
    controller: str = Field(min_length=1, description="the controller (controlador) responsible for the processing")
    retention: str = Field(min_length=1, description="how long data and models are kept, e.g. '5 years'")
    contest_audit_log: Path | None = Field(
        default=None, description="the review console's audit log (`esteira console --audit_log`), where contested "
                                  "decisions and their outcomes are recorded; the LGPD report counts them per version")
    access_audit_logs: list[Path] = Field(
        default=[], description="the model server's hash-chained access audit logs (--audit_log_file)")
    protected_attributes: list[str] = Field(
        default=[], description="columns of the eval examples whose groups the Evaluator compares (false-positive "
                                "and false-negative rates, average precision, largest gaps), e.g. the privacy "
                                "policy's generalized [age_band, cep_region]")
    field_legal_bases: dict[str, str] = Field(
        default={}, description="raw column -> its LGPD legal basis where it differs from legal_basis, e.g. "
                                "{birth_date: 'credit protection (art. 7, X)'}; other processed columns fall "
                                "under legal_basis")
    retention_schedule: RetentionSchedule | None = Field(
        default=None, description="how long the training data, the prediction memory and the audit logs are kept "
                                  "(LGPD art. 15-16)")
    ripd: str | None = Field(
        default=None, min_length=1,
        description="where the data protection impact report (RIPD, LGPD art. 38) is kept, e.g. a document id "
                    "or URL")

    @field_validator("protected_attributes")
    @classmethod
    def _distinct_attributes(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed more than once; name each column once")
        return value

    @field_validator("field_legal_bases")
    @classmethod
    def _bases_are_stated(cls, value: dict[str, str]) -> dict[str, str]:
        empty = sorted(name for name, basis in value.items() if not basis.strip())
        if empty:
            raise ValueError(f"no legal basis written for {', '.join(empty)}; state it, e.g. 'credit protection "
                             "(art. 7, X)', or remove the column to use governance.legal_basis")
        return value


class PipelineSection(_Section):
    # Kubeflow Pipelines' rule, enforced here so a local run never picks a name KFP later rejects.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,127}$",
                      description="lower-case letters, digits and '-', e.g. breast-cancer")
    root: Path = Field(description="folder for pipeline artifacts (this machine's or a mounted volume)")
    remote_root: str | None = Field(
        default=None, description="object-store URI (gs://, s3://, minio://) a Kubeflow run keeps its artifacts "
                                  "under; --pipeline-root overrides it, in-process runs use root")
    metadata_path: Path = Field(description="sqlite MLMD database file")
    enable_cache: bool = True

    @field_validator("root", mode="before")
    @classmethod
    def _root_is_a_folder(cls, value: Any) -> Any:
        """pathlib would silently fold gs://bank/x into the folder gs:/bank/x."""
        if isinstance(value, str) and OBJECT_STORE_URI.match(value):
            raise ValueError(f"{value!r} is an object-store URI, but root is the folder an in-process run writes "
                             "(its run log, reports and MLflow store go beside it); keep root a folder and set "
                             f"pipeline.remote_root: {value} for Kubeflow runs (or pass --pipeline-root)")
        return value

    @field_validator("remote_root")
    @classmethod
    def _remote_root_is_a_uri(cls, value: str | None) -> str | None:
        if value is not None and not OBJECT_STORE_URI.match(value):
            raise ValueError(f"{value!r} has no scheme; name the object store, e.g. gs://bank-ml/esteira "
                             "(a folder goes in pipeline.root)")
        return value


class UseCaseConfig(_Section):
    """One use case, end to end."""

    # Paths resolved() derived because the file left them unset, and the folder the schema path is
    # relative to: with_overrides derives them again, so `--set pipeline.root=X` moves the backups too.
    _derived: frozenset[str] = PrivateAttr(default=frozenset())
    _config_dir: Path | None = PrivateAttr(default=None)

    pipeline: PipelineSection
    data: DataConfig
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    validation: ValidationConfig = ValidationConfig()
    model_validation: ModelValidationConfig = ModelValidationConfig()
    optimization: OptimizationSettings | None = Field(
        default=None, description="TFLite variants of each blessed model, measured and gated before the push "
                                  "(null: no ModelOptimizer in the pipeline)")
    serving: ServingConfig
    runner: RunnerConfig = RunnerConfig()
    tracking: TrackingConfig = TrackingConfig()
    privacy: PrivacyPolicy | None = Field(
        default=None, description="column policy applied while reading raw data (anonymizing ExampleGen)")
    sequence_features: SequenceFeaturesConfig | None = Field(
        default=None, description="per-key history features built by the anonymizing ExampleGen")
    window_features: WindowFeaturesConfig | None = Field(
        default=None, description="the Fraud Detection Handbook's customer and delayed terminal windows, "
                                  "built by the anonymizing ExampleGen")
    governance: GovernanceConfig | None = Field(
        default=None, description="legal basis, purpose, controller, retention (required with a privacy policy)")

    @model_validator(mode="after")
    def _slices_are_features(self) -> UseCaseConfig:
        unknown = [name for name in self.evaluation.slice_features if name not in self.data.features]
        if unknown and self.evaluation.transform_signature is None:
            raise ValueError(
                f"evaluation.slice_features names {unknown}, which are not in data.features "
                "(set evaluation.transform_signature to slice on transformed features)")
        return self

    @model_validator(mode="after")
    def _per_day_metrics_read_written_columns(self) -> UseCaseConfig:
        """Card Precision@k and the alert budgets read the card and time of each eval example."""
        outputs = dict(self.privacy.output_columns()) if self.privacy is not None else {}
        for key in ("card_key", "time_key"):
            name = getattr(self.evaluation, key)
            if name and outputs and name not in outputs:
                raise ValueError(f"evaluation.{key}: '{name}' is not a column the privacy policy writes; "
                                 f"available: {', '.join(sorted(outputs))}")
        return self

    @model_validator(mode="after")
    def _columns_come_from_the_policy(self) -> UseCaseConfig:
        if self.privacy is not None and self.governance is None:
            raise ValueError(
                "governance: required key is missing (a use case with a privacy policy must declare "
                "legal_basis, purpose, controller and retention for its LGPD report)")
        if self.sequence_features is not None and self.privacy is None:
            raise ValueError("sequence_features needs a privacy section (the anonymizing ExampleGen builds them)")
        for name, present in (("window_features", self.window_features is not None),
                              ("data.split (kind: time)", self.data.time_split is not None)):
            if present and self.privacy is None:
                raise ValueError(f"{name} needs a privacy section (the anonymizing ExampleGen builds it)")
        if self.privacy is None:
            return self
        outputs: dict[str, str] = dict(self.privacy.output_columns())
        windows = self.window_features.feature_kinds(outputs) if self.window_features is not None else {}
        if self.sequence_features is not None:
            outputs.update(self.sequence_features.feature_kinds(outputs))
        outputs.update(windows)
        for name, kind in windows.items():
            declared = self.data.features.get(name)
            if declared is not None and declared.value != kind:
                raise ValueError(f"data.features.{name}: the window feature is emitted as {kind}, not "
                                 f"{declared.value}; declare it as {kind}")
        for name in [self.data.label, *self.data.features, *filter(None, [self.data.partition_feature])]:
            if name not in outputs:
                raise ValueError(
                    f"data column '{name}' is not produced by the privacy policy; "
                    f"available: {', '.join(sorted(outputs))}")
        return self

    @model_validator(mode="after")
    def _protected_attributes_reach_the_evaluator(self) -> UseCaseConfig:
        """Each protected attribute is a column of the eval examples with a few groups; a raw column the policy
        drops or generalizes is refused naming the column to use instead."""
        attributes = self.governance.protected_attributes if self.governance else []
        if self.evaluation.max_false_positive_rate_gap is not None and not attributes:
            raise ValueError("evaluation.max_false_positive_rate_gap needs governance.protected_attributes, the "
                             "columns whose groups are compared (e.g. [age_band, cep_region])")
        for name in attributes:
            problem = protected_attribute_problem(self, name)
            if problem:
                raise ValueError(f"governance.protected_attributes: {problem}")
        return self

    @model_validator(mode="after")
    def _legal_bases_name_processed_columns(self) -> UseCaseConfig:
        bases = self.governance.field_legal_bases if self.governance else {}
        if bases and self.privacy is None:
            raise ValueError("governance.field_legal_bases names raw columns of the privacy policy: add a privacy "
                             "section or remove field_legal_bases")
        for name in bases:
            assert self.privacy is not None
            rule = self.privacy.columns.get(name)
            if rule is None:
                sources = {written: raw for raw, other in self.privacy.columns.items()
                           if (written := getattr(other, "output", None))}
                hint = (f"'{name}' is the output of '{sources[name]}'; name the raw column '{sources[name]}'"
                        if name in sources else f"'{name}' is not a column of the privacy policy")
                raise ValueError(f"governance.field_legal_bases: {hint} (raw columns: "
                                 f"{', '.join(self.privacy.columns)})")
            if isinstance(rule, DropColumn):
                raise ValueError(f"governance.field_legal_bases: the privacy policy drops '{name}' while reading, so "
                                 "it is not processed and needs no basis; remove it")
        return self

    @model_validator(mode="after")
    def _time_split_is_causal(self) -> UseCaseConfig:
        """The time split reads its columns from the window features (else the card history); one label
        delay: terminal windows may not use a label the split says is not known yet."""
        split = self.data.time_split
        if split is None or self.privacy is None:
            return self
        if self.window_features is None and self.sequence_features is None:
            raise ValueError("data.split: a time split needs window_features (or sequence_features) to name "
                             "the time and card columns; add a window_features section")
        if self.window_features is not None and self.window_features.label_delay_days < split.delay_days:
            raise ValueError(
                f"window_features.label_delay_days ({self.window_features.label_delay_days}) is shorter than "
                f"data.split.delay_days ({split.delay_days}): the terminal windows would use labels the split "
                f"treats as unknown; set label_delay_days to at least {split.delay_days}")
        if self.sequence_features is not None and self.data.label in self.sequence_features.features:
            raise ValueError(f"sequence_features.features lists the label {self.data.label!r}: earlier labels "
                             "are not known at scoring time; remove it (the window features use labels after "
                             "the delay)")
        return self

    def time_split_settings(self) -> dict[str, Any] | None:
        """What the anonymizing ExampleGen needs for the time split (its windows and the columns it reads)."""
        split = self.data.time_split
        if split is None:
            return None
        columns = (self.window_features or self.sequence_features)
        assert columns is not None  # checked by _time_split_is_causal
        if self.window_features is not None:
            card_key = self.window_features.card_key
        else:
            assert self.sequence_features is not None  # columns is the sequence settings
            card_key = self.sequence_features.key
        return {"train_days": split.train_days, "delay_days": split.delay_days, "eval_days": split.eval_days,
                "time": columns.time, "card_key": card_key, "label": self.data.label}

    def sequence_feature_types(self) -> dict[str, str]:
        """History feature name -> float | int | string, as the anonymizing ExampleGen emits them."""
        if self.sequence_features is None or self.privacy is None:
            return {}
        kinds = self.sequence_features.feature_kinds(self.privacy.output_columns())
        return {name: {"bytes": "string"}.get(kind, kind) for name, kind in kinds.items()}

    def trainer_settings(self, source: str = "config") -> TrainerSettings:
        """What preprocessing_fn and run_fn read (custom_config), checked by the model package's schema."""
        sequence = self.sequence_features
        return settings_schema(self.model.module).parse({
            "data": self.data.model_dump(include=set(DataSettings.model_fields)),
            "model": self.model.model_dump(include=set(ModelSettings.model_fields)),
            "training": self.training.model_dump(include=set(TrainingSettings.model_fields)),
            "sequence": {"length": sequence.length, "prefix": sequence.prefix,
                         "features": self.sequence_feature_types()} if sequence else None,
            "decision_threshold": self.evaluation.decision_threshold,
        }, source)

    def resolved(self, base: Path, config_dir: Path | None = None) -> UseCaseConfig:
        """A copy with every relative path made absolute against ``base`` (the curated schema's
        against ``config_dir``, the config file's folder, since schemas live beside the configs)."""
        def absolute(path: Path, against: Path = base) -> Path:
            return path if path.is_absolute() else (against / path).resolve()

        root = absolute(self.pipeline.root)
        schema = self.validation.schema_file or Path("schemas") / self.serving.model_name / "schema.pbtxt"
        derived = {key for key, value in (("validation.schema_file", self.validation.schema_file),
                                          ("training.backup_root", self.training.backup_root)) if value is None}
        copy = self.model_copy(update={
            "validation": self.validation.model_copy(update={
                "schema_file": absolute(schema, config_dir or base)}),
            "training": self.training.model_copy(update={
                "backup_root": absolute(self.training.backup_root) if self.training.backup_root
                else root / "_trainer_backups"}),
            "pipeline": self.pipeline.model_copy(update={
                "root": root,
                "metadata_path": absolute(self.pipeline.metadata_path)}),
            "data": self.data.model_copy(update={"source": absolute(self.data.source)}),
            "serving": self.serving.model_copy(update={"base_path": absolute(self.serving.base_path)}),
            "governance": self.governance.model_copy(update={
                "access_audit_logs": [absolute(path) for path in self.governance.access_audit_logs],
                "contest_audit_log": absolute(self.governance.contest_audit_log)
                if self.governance.contest_audit_log else None})
            if self.governance else None,
        })
        copy._derived = frozenset(derived | self._derived)
        copy._config_dir = config_dir or self._config_dir
        return copy

    def with_overrides(self, overrides: dict[str, Any]) -> UseCaseConfig:
        """A validated copy with dotted keys replaced, e.g. {'training.train_steps': 10}."""
        data = self.model_dump(mode="json")
        for dotted, value in overrides.items():
            node = data
            *parents, leaf = dotted.split(".")
            for key in parents:
                if not isinstance(node.get(key), dict):
                    raise ConfigError(f"override {dotted}: '{key}' is not a config section")
                node = node[key]
            if leaf not in node:
                raise ConfigError(f"override {dotted}: unknown key '{leaf}' (known: {', '.join(node)})")
            node[leaf] = value
        for dotted in self._derived - set(overrides):  # derived from what the overrides may have changed
            section, leaf = dotted.split(".")
            data[section][leaf] = None
        config = _validate(data, source="overrides")
        if not self._derived and self._config_dir is None:
            return config  # never resolved: nothing to derive again
        return config.resolved(Path.cwd(), config_dir=self._config_dir)


def protected_attribute_problem(config: UseCaseConfig, name: str) -> str | None:
    """Why ``name`` cannot define groups on the eval examples (None: it can)."""
    if name == config.data.label:
        return f"'{name}' is the label; name a column describing the person, e.g. age_band"
    if config.privacy is None:
        if name not in config.data.features:
            return f"'{name}' is not in data.features ({', '.join(config.data.features)})"
        return None
    policy = config.privacy
    outputs = policy.output_columns()
    writers = {(rule.output or raw): rule for raw, rule in policy.columns.items() if not isinstance(rule, DropColumn)}
    if name in outputs:
        if isinstance(writers[name], PseudonymizeColumn):
            return (f"'{name}' is pseudonymized: each value is one person, not a group; name a generalized "
                    f"column such as {', '.join(_generalized(policy)) or 'an age band'}")
        if outputs[name] in ("float", "timestamp"):
            return (f"'{name}' is a {outputs[name]} column: every value would be its own group; generalize it "
                    "into bands in privacy.columns (method: band) and name the band column")
        return None
    rule = policy.columns.get(name)
    if rule is None:
        return f"'{name}' is not a column the privacy policy writes; available: {', '.join(sorted(outputs))}"
    if isinstance(rule, DropColumn):
        return (f"the privacy policy drops '{name}' while reading, so the Evaluator never sees it and no "
                f"generalized form of it is written; add one in privacy.columns (treatment: generalize) or name "
                f"one of {', '.join(_generalized(policy)) or ', '.join(sorted(outputs))}")
    if isinstance(rule, PseudonymizeColumn):
        return (f"'{name}' is pseudonymized: each value is one person, not a group; name a generalized "
                f"column such as {', '.join(_generalized(policy)) or 'an age band'}")
    written = rule.output or name
    if rule.treatment == "generalize":
        return f"the privacy policy generalizes '{name}' into '{written}' while reading; name '{written}' instead"
    return f"the privacy policy writes '{name}' as '{written}'; name '{written}' instead"


def drift_exclusions(config: UseCaseConfig) -> dict[str, str]:
    """Columns a drift report must not score, each with the reason the report states: the label (its
    shift is the prediction shift's business, not an input's), timestamps (they move by construction)
    and the use case's ``validation.drift_skip_features`` (ids and the like)."""
    excluded = dict.fromkeys(config.validation.drift_skip_features, "validation.drift_skip_features")
    if config.privacy is not None:
        excluded.update({name: "a timestamp (moves by construction)"
                         for name, dtype in config.privacy.output_columns().items() if dtype == "timestamp"})
    excluded[config.data.label] = "the label"
    return dict(sorted(excluded.items()))


def _generalized(policy: PrivacyPolicy) -> list[str]:
    """Output columns the policy generalizes (age bands, regions, amount bands): the natural groups."""
    return [rule.output or raw for raw, rule in policy.columns.items() if rule.treatment == "generalize"]


def _format_validation_error(error: ValidationError, source: str) -> str:
    hint = _near_miss(error.errors()[0])
    return f"{source}: {describe_validation_error(error, UseCaseConfig)}{hint}"


def _near_miss(line: Any) -> str:
    """'; did you mean <key or value>?' when the unknown key or refused value is close to an allowed one."""
    loc, kind = tuple(line["loc"]), line["type"]
    if kind == "extra_forbidden" and loc:
        allowed = _allowed_keys(UseCaseConfig, loc[:-1])
        match = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        return f"; did you mean {'.'.join([*map(str, loc[:-1]), match[0]])}?" if match else ""
    expected = (line.get("ctx") or {}).get("expected")
    if kind in ("literal_error", "enum") and isinstance(expected, str) and isinstance(line.get("input"), str):
        match = difflib.get_close_matches(line["input"], re.findall(r"'([^']*)'", expected), n=1)
        return f"; did you mean '{match[0]}'?" if match else ""
    return ""


def _validate(data: Any, source: str) -> UseCaseConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections ({', '.join(UseCaseConfig.model_fields)})")
    try:
        config = UseCaseConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None
    try:  # the model package's own options and cross-checks, before any TFX work
        config.trainer_settings(source)
    except SettingsError as error:
        raise ConfigError(str(error)) from None
    return config


def load_config(path: str | Path, base: Path | None = None) -> UseCaseConfig:
    """Load and validate a use-case YAML; relative paths resolve against ``base`` (default: cwd)."""
    path = Path(path)
    if not path.is_file():
        siblings = [p.name for p in path.parent.glob("*.y*ml")] if path.parent.is_dir() else []
        near = difflib.get_close_matches(path.name, siblings, n=1)
        hint = f"did you mean {path.with_name(near[0])}?" if near else \
            "pass an existing file, e.g. configs/breast_cancer.yaml"
        raise ConfigError(f"config file {path} not found; {hint}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(error, 'problem', error)})") from None
    config = _validate(data, source=str(path)).resolved(base or Path.cwd(), config_dir=path.resolve().parent)
    check_time_split_data(config)
    return config


def input_glob(pattern: str) -> str:
    """ExampleGen's span/version/date placeholders as glob wildcards, to find the files up front."""
    import re

    return re.sub(r"\{(SPAN|VERSION|YYYY|MM|DD)(:\d+)?\}", "*", pattern)


def present_spans(source: Path, pattern: str) -> list[int]:
    """Span numbers of the files under `source` that `pattern` ('span-{SPAN:4}/*.csv') matches."""
    parts = re.split(r"(\{SPAN(?::\d+)?\}|\*)", pattern)
    regex = re.compile("".join("(\\d+)" if part.startswith("{SPAN") else "[^/]*" if part == "*"
                               else re.escape(part) for part in parts))
    spans = set()
    for path in source.glob(input_glob(pattern)):
        match = regex.fullmatch(path.relative_to(source).as_posix())
        if match:
            spans.add(int(match.group(1)))
    return sorted(spans)


def check_time_split_data(config: UseCaseConfig) -> None:
    """The time split's windows against the spans under data.source (when the folder exists).

    One span is one day. The train and eval windows must lie inside the data, and the data must hold
    at least label_delay_days before the train window, or the delayed terminal windows of the first
    train days would see no label at all.
    """
    split, source = config.data.time_split, config.data.source
    if split is None or not source.is_dir():
        return
    spans = present_spans(source, config.data.input_pattern)
    if not spans:
        return  # check_data_columns names the empty folder
    end = spans[-1] if split.end_span is None else split.end_span
    if end not in spans:
        raise ConfigError(f"data.split.end_span: span {end} is not under {source} (spans {spans[0]}..{spans[-1]}); "
                          "set end_span to a span present, or null for the latest")
    first = end - split.total_days + 1
    if first < spans[0]:
        raise ConfigError(
            f"data.split: train_days + delay_days + eval_days = {split.total_days} days end on span {end} and start "
            f"at span {first}, before the data's first span {spans[0]}; shorten the windows or set end_span to "
            f"{spans[0] + split.total_days - 1} or later")
    present = set(spans)
    needed = [*range(first, first + split.train_days), *range(end - split.eval_days + 1, end + 1)]
    missing = [span for span in needed if span not in present]
    if missing:
        raise ConfigError(f"data.split: spans {missing} of the train and eval windows are missing under {source}; "
                          "write them or move end_span")
    if config.window_features is not None:
        history = first - spans[0]
        delay = config.window_features.label_delay_days
        if history < delay:
            raise ConfigError(
                f"window_features.label_delay_days: terminal windows end {delay} days before each transaction, "
                f"but the data holds only {history} day(s) before the train window (span {first}); set "
                f"data.split.end_span to {spans[0] + delay + split.total_days - 1} or later, or write earlier days")


def check_data_columns(config: UseCaseConfig) -> list[Path]:
    """Check the data exists and every CSV has the columns the config needs; return the CSVs.

    With a privacy policy, the raw header must match the policy exactly (deny by default);
    otherwise the label and feature columns must be present.
    """
    source = config.data.source
    if not source.is_dir():
        create = (f"create it with `{config.data.create_command.format(source=source)}`"
                  if config.data.create_command else "create it (see data.create_command)")
        raise ConfigError(f"data.source: folder {source} not found; {create} or fix the path")
    files = sorted(source.glob(input_glob(config.data.input_pattern)))
    if not files:
        raise ConfigError(f"data.input_pattern: no file matches {config.data.input_pattern} in {source}")
    for file in files:
        with file.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if config.privacy is not None:
            try:
                config.privacy.check_header(header, source=str(file))
            except (ValueError, PrivacyError) as error:
                raise ConfigError(f"privacy.columns: {error}") from None
            continue
        if config.data.label not in header:
            raise ConfigError(
                f"data.label: column '{config.data.label}' not in {file.name} "
                f"(columns: {', '.join(header)}); fix data.label or the data")
        missing = [column for column in config.data.features if column not in header]
        if missing:
            raise ConfigError(
                f"data.features: column(s) {', '.join(missing)} not in {file.name} "
                f"(columns: {', '.join(header)}); fix data.features or the data")
    check_time_split_data(config)  # again: `--set data.split.end_span=...` skips load_config's check
    return files
