"""create_pipeline(config): the TFX DAG of a use case, read top to bottom like the production line."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.base.base_component import BaseComponent

from components.data_validator import DataValidator, PreviousSpanStrategy
from components.governance_report import GovernanceReport
from components.mlflow_logger import MlflowLogger
from components.model_optimizer import ModelOptimizer
from components.model_validator import ModelValidator
from components.recording_trainer import RecordingTrainerExecutor
from components.reproducible_transform import ReproducibleTransformExecutor
from components.serving_pusher import ServingPusher
from evidence.fairness import gap_metric_name
from pipeline.config import EvaluationConfig, GateConfig, UseCaseConfig, drift_exclusions

PREDICTION_KEY = "probability"
FRAUD_METRICS_MODULE = "models.fraud.tfma_metrics"
FAIRNESS_METRICS_MODULE = "pipeline.fairness_metric"


def trainer_custom_config(config: UseCaseConfig) -> dict:
    """Settings the model module reads in preprocessing_fn and run_fn (models/common/settings.py, plain JSON)."""
    return config.trainer_settings().to_custom_config()


def metric_configs(evaluation: EvaluationConfig) -> dict[str, tfma.MetricConfig]:
    """Every metric the Evaluator reports, by the name TFMA records it under (EvaluationConfig.metric_names()).

    The fraud metrics load by module path; naming the same card and time features in each lets them
    share one copy of the eval rows per slice (models/fraud/tfma_metrics.py).
    """
    features = {"card_key": evaluation.card_key, "time_key": evaluation.time_key}

    def fraud(class_name: str, name: str, **settings: object) -> tfma.MetricConfig:
        return tfma.MetricConfig(class_name=class_name, module=FRAUD_METRICS_MODULE,
                                 config=json.dumps({"name": name, **settings, **features}))

    configs = {
        "auc": tfma.MetricConfig(class_name="AUC"),
        "auc_precision_recall": tfma.MetricConfig(class_name="AUCPrecisionRecall"),
        "binary_accuracy": tfma.MetricConfig(class_name="BinaryAccuracy"),
        "precision": tfma.MetricConfig(class_name="Precision"),
        "recall": tfma.MetricConfig(class_name="Recall"),
        **{evaluation.recall_at_fpr_name(rate): tfma.MetricConfig(
            class_name="RecallAtFalsePositiveRate",
            config=json.dumps({"false_positive_rate": rate, "name": evaluation.recall_at_fpr_name(rate)}))
           for rate in evaluation.recall_at_false_positive_rates},
        "average_precision": fraud("AveragePrecision", "average_precision"),
    }
    card_precision = evaluation.card_precision_name()
    if card_precision:
        configs[card_precision] = fraud("CardPrecisionAtK", card_precision, k=evaluation.card_precision_k)
    for budget, name in zip(evaluation.alerts_per_day, evaluation.alert_budget_names(), strict=True):
        configs[name] = fraud("RecallAtDailyAlertBudget", name, alerts_per_day=budget)
    return configs


def fairness_metric_configs(evaluation: EvaluationConfig, attributes: list[str]) -> list[tfma.MetricConfig]:
    """Per slice, false-positive and false-negative rates at the decision threshold (TFMA's FPR and FNR);
    per protected attribute, its groups' table and largest gaps (pipeline/fairness_metric.py), the
    false-positive-rate gap gated on the overall slice when evaluation.max_false_positive_rate_gap is set."""
    if not attributes:
        return []
    threshold = evaluation.decision_threshold
    configs = [tfma.MetricConfig(class_name=class_name, config=json.dumps({"thresholds": [threshold], "name": name}))
               for class_name, name in (("FPR", "false_positive_rate"), ("FNR", "false_negative_rate"))]
    for attribute in attributes:
        metric = tfma.MetricConfig(class_name="ProtectedGroupGaps", module=FAIRNESS_METRICS_MODULE, config=json.dumps(
            {"attribute": attribute, "threshold": threshold,
             "name": gap_metric_name("false_positive_rate", attribute)}))
        if evaluation.max_false_positive_rate_gap is not None:
            limit = tfma.MetricThreshold()
            limit.value_threshold.upper_bound.value = evaluation.max_false_positive_rate_gap
            metric.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=limit)
        configs.append(metric)
    return configs


def gate_threshold(gate: GateConfig) -> tfma.MetricThreshold:
    """The floor and the allowed change versus the latest blessed model (absolute and, when configured,
    relative: (candidate - baseline) / baseline); TFMA requires every part to hold."""
    threshold = tfma.MetricThreshold()
    if gate.lower_bound is not None:
        threshold.value_threshold.lower_bound.value = gate.lower_bound
    if gate.change_threshold is not None or gate.relative_improvement is not None:
        threshold.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
        if gate.change_threshold is not None:
            threshold.change_threshold.absolute.value = gate.change_threshold
        if gate.relative_improvement is not None:
            threshold.change_threshold.relative.value = gate.relative_improvement
    return threshold


def eval_config(config: UseCaseConfig) -> tfma.EvalConfig:
    """Every reported metric, the promotion gate (evaluation.gate, or the auc_* keys) on one of them, and the
    fairness figures of governance.protected_attributes (sliced on each, gated by
    evaluation.max_false_positive_rate_gap)."""
    gate = config.evaluation.promotion_gate()
    configs = metric_configs(config.evaluation)
    # The gate judges the whole eval split; slices are reported, not gated (a small slice's figure is noise).
    configs[gate.metric].per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()],
                                                  threshold=gate_threshold(gate))
    attributes = config.governance.protected_attributes if config.governance else []
    metrics = [tfma.MetricConfig(class_name="ExampleCount"), *configs.values(),
               *fairness_metric_configs(config.evaluation, attributes)]
    sliced = [*config.evaluation.slice_features, *(name for name in attributes
                                                   if name not in config.evaluation.slice_features)]
    slices = [tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[name]) for name in sliced]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name="serving_default", label_key=config.data.label, prediction_key=PREDICTION_KEY,
            preprocessing_function_names=[config.evaluation.transform_signature]
            if config.evaluation.transform_signature else [])],
        slicing_specs=slices,
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def make_example_gen(config: UseCaseConfig) -> BaseComponent:
    """CsvExampleGen (TFX's CSV executor recording the DVC version), or the anonymizing ExampleGen when the
    use case declares a privacy policy.

    A time split is two input splits, train and eval, over the same span pattern: TFX resolves the
    last eval span (the latest, or data.split.end_span through a RangeConfig) and the anonymizing
    executor reads the windows' span ranges ending there.
    """
    time_split = config.data.time_split
    range_config = None
    if time_split is not None:
        input_config = tfx.proto.Input(splits=[tfx.proto.Input.Split(name=name, pattern=config.data.input_pattern)
                                               for name in ("train", "eval")])
        output_config = tfx.proto.Output()  # the output splits are the input splits
        if time_split.end_span is not None:
            range_config = tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(
                start_span_number=time_split.end_span, end_span_number=time_split.end_span))
    else:
        assert isinstance(config.data.split, dict)  # no time split: hash buckets by split name
        input_config = tfx.proto.Input(splits=[tfx.proto.Input.Split(name="raw", pattern=config.data.input_pattern)])
        split_config = tfx.proto.SplitConfig(splits=[tfx.proto.SplitConfig.Split(name=name, hash_buckets=buckets)
                                                     for name, buckets in config.data.split.items()])
        if config.data.partition_feature:  # an empty name would be read as a feature called ''
            split_config.partition_feature_name = config.data.partition_feature
        output_config = tfx.proto.Output(split_config=split_config)
    if config.privacy is None:
        # TFX's CSV reader, plus the input folder's DVC version on its Examples (as the anonymizing one records)
        from components.recording_csv_example_gen import RecordingCsvExampleGen

        return RecordingCsvExampleGen(input_base=str(config.data.source), input_config=input_config,
                                      output_config=output_config).with_id("CsvExampleGen")
    from components.anonymizing_example_gen import AnonymizingExampleGen

    return AnonymizingExampleGen(
        input_base=str(config.data.source), privacy_policy=config.privacy,
        sequence_features=config.sequence_features, input_config=input_config,
        output_config=output_config, range_config=range_config,
        window_features=config.window_features, time_split=config.time_split_settings())


def make_mlflow_logger(config: UseCaseConfig, example_gen: BaseComponent, schema_gen: BaseComponent,
                       example_validator: BaseComponent, trainer: BaseComponent, evaluator: BaseComponent,
                       pusher: BaseComponent) -> BaseComponent:
    """The last node: logs the run to MLflow whether or not the Pusher published."""
    from tracking.store import LOCAL_FOLDER

    return MlflowLogger(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"], model=trainer.outputs["model"],
        model_run=trainer.outputs["model_run"], evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"], pushed_model=pusher.outputs["pushed_model"],
        config=config.model_dump(mode="json"), model_name=config.serving.model_name,
        experiment=config.tracking.experiment or config.pipeline.name,
        # Read here, not only in the executor, so another tracking server is another cache key.
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or config.tracking.uri,
        local_store=str(config.pipeline.root / LOCAL_FOLDER), required=config.tracking.required,
        metadata_path=str(config.pipeline.metadata_path))


def make_schema_gen(config: UseCaseConfig, statistics: tfx.dsl.Channel) -> BaseComponent:
    """The curated schema when `esteira schema freeze` wrote one, else the one inferred from the data."""
    schema_file = config.validation.schema_file
    if schema_file is not None and schema_file.is_file():
        return tfx.components.ImportSchemaGen(schema_file=str(schema_file)).with_id("SchemaGen")
    return tfx.components.SchemaGen(statistics=statistics, infer_feature_shape=True)


def make_data_validator(config: UseCaseConfig, statistics_gen: BaseComponent,
                        schema: tfx.dsl.Channel) -> list[BaseComponent]:
    """The data gate, with the previous span's statistics when drift thresholds are set."""
    validation = config.validation
    previous: list[BaseComponent] = []
    if validation.categorical_drift_threshold or validation.numeric_drift_threshold:
        previous = [tfx.dsl.Resolver(
            strategy_class=PreviousSpanStrategy,
            statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics,
                                       producer_component_id=statistics_gen.id),
        ).with_id("previous_span_statistics_resolver")]
        # After this run's statistics exist, so "the newest span" is the current one and not the last run's.
        previous[0].add_upstream_node(statistics_gen)
    validator = DataValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema,
        previous_statistics=previous[0].outputs["statistics"] if previous else None,
        on_anomaly=validation.on_anomaly,
        categorical_drift_threshold=validation.categorical_drift_threshold or 0.0,
        numeric_drift_threshold=validation.numeric_drift_threshold or 0.0,
        drift_skip_features=json.dumps(sorted(validation.drift_skip_features)),
    ).with_id("ExampleValidator")
    return [*previous, validator]


def make_model_optimizer(config: UseCaseConfig, trainer: BaseComponent, example_gen: BaseComponent,
                         evaluator: BaseComponent, model_validator: BaseComponent) -> BaseComponent | None:
    """TFLite variants of the blessed model, gated, for the Pusher to place in the version folder."""
    if config.optimization is None:
        return None
    return ModelOptimizer(
        model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
        model_blessing=evaluator.outputs["blessing"], infra_blessing=model_validator.outputs["blessing"],
        settings=config.optimization.model_dump_json(), label=config.data.label,
        prediction_key=PREDICTION_KEY).with_id("ModelOptimizer")


def create_pipeline(config: UseCaseConfig, beam_pipeline_args: list[str] | None = None,
                    pipeline_root: str | None = None) -> tfx.dsl.Pipeline:
    """ExampleGen → StatisticsGen → SchemaGen → ExampleValidator → Transform → Trainer → Evaluator
    → ModelValidator → ModelOptimizer (with an optimization section) → Pusher → GovernanceReport → MlflowLogger.
    ``pipeline_root``: where artifacts go when not pipeline.root (a Kubeflow run's object store)."""
    module = config.model.module
    custom_config = trainer_custom_config(config)

    example_gen = make_example_gen(config)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = make_schema_gen(config, statistics_gen.outputs["statistics"])
    *previous_span, example_validator = make_data_validator(config, statistics_gen, schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=f"{module}.preprocessing.preprocessing_fn", custom_config=custom_config)
    transform.executor_spec = executor_spec.BeamExecutorSpec(ReproducibleTransformExecutor)
    transform.add_upstream_node(example_validator)  # the data gate runs, and may stop the run, first
    trainer = tfx.components.Trainer(
        run_fn=f"{module}.model.run_fn",
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        statistics=statistics_gen.outputs["statistics"],  # example counts, for DP accounting
        train_args=tfx.proto.TrainArgs(num_steps=config.training.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.training.eval_steps),
        custom_config=custom_config,
        custom_executor_spec=executor_spec.ExecutorClassSpec(RecordingTrainerExecutor))
    baseline_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=baseline_resolver.outputs["model"], eval_config=eval_config(config))
    model_validator = ModelValidator(
        model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
        latency_budget_ms=config.model_validation.latency_budget_ms,
        sample_size=config.model_validation.sample_size,
        startup_timeout_s=config.model_validation.startup_timeout_s,
        signature_tolerance=config.model_validation.signature_tolerance,
        prediction_key=PREDICTION_KEY,
    ).with_id("ModelValidator")
    model_validator.add_upstream_node(evaluator)  # Evaluator, then ModelValidator, then Pusher
    optimizer = make_model_optimizer(config, trainer, example_gen, evaluator, model_validator)
    pusher = ServingPusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        infra_blessing=model_validator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
            base_directory=str(config.serving.base_path))),
        statistics=statistics_gen.outputs["statistics"],
        reference_features=[name for name, kind in config.data.features.items() if kind.value == "float"],
        tflite_model=optimizer.outputs["optimized_model"] if optimizer else None,
        examples=example_gen.outputs["examples"],  # eval rows for the version's warm-up records
    ).with_id("Pusher")
    governance_report = GovernanceReport(
        pushed_model=pusher.outputs["pushed_model"], metadata_path=str(config.pipeline.metadata_path),
        model_name=config.serving.model_name,
        governance_json=config.governance.model_dump_json() if config.governance else "",
        drift_excluded_json=json.dumps(drift_exclusions(config)))
    mlflow_logger = make_mlflow_logger(config, example_gen, schema_gen, example_validator, trainer, evaluator,
                                       pusher)
    mlflow_logger.add_upstream_node(governance_report)  # one order for every runner: reports, then the log

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline.name,
        pipeline_root=pipeline_root or str(config.pipeline.root),
        components=[example_gen, statistics_gen, schema_gen, *previous_span, example_validator, transform,
                    trainer, baseline_resolver, evaluator, model_validator, *filter(None, [optimizer]), pusher,
                    governance_report, mlflow_logger],
        enable_cache=config.pipeline.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(config.pipeline.metadata_path)),
        beam_pipeline_args=config.runner.beam_args if beam_pipeline_args is None else beam_pipeline_args)
