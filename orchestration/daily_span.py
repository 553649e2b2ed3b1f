"""Which span a scheduled run reads: the span dated on the run's logical date, not the latest one.

Daily data arrives one folder per day (``span-NNNN/``); the Airflow run for a day must train on that day's
span, so a rerun of an earlier day (or a run that starts after the next day's span has landed) reads the
same data as it would have on time. The spans' dates come from the same calendar the anonymizing ExampleGen
places rows with (the data's manifest.json, else the earliest span's first row); the span is handed to
ExampleGen as ``data.split.end_span``, which becomes its RangeConfig.
"""
from __future__ import annotations

from datetime import date

from pipeline.config import ConfigError, UseCaseConfig, check_time_split_data, present_spans


def span_of_day(config: UseCaseConfig, day: date) -> int:
    """The span dated ``day`` under data.source; a clear error when that day's span is not there."""
    from components.anonymizing_example_gen.executor import span_calendar
    from components.anonymizing_example_gen.time_windows import TimeSplitSettings

    settings = config.time_split_settings()
    if settings is None or config.privacy is None:
        raise ConfigError(f"{config.pipeline.name} has no time split (data.split kind: time): its runs read "
                          "every file, not one span per day")
    source, pattern = config.data.source, config.data.input_pattern
    spans = present_spans(source, pattern) if source.is_dir() else []
    if not spans:
        raise ConfigError(f"no span matches {pattern} under {source}; write the data first")
    calendar = span_calendar(str(source), pattern, spans[-1], TimeSplitSettings(**settings), config.privacy)
    span = calendar.span_of_day((day - calendar.origin).days)
    if span not in spans:
        first, last = spans[0], spans[-1]
        raise ConfigError(
            f"the run for {day} reads span {span} (dated {calendar.date_of_span(span)} by the data's "
            f"{calendar.source}), which is not under {source} (spans {first}..{last}, "
            f"{calendar.date_of_span(first)} to {calendar.date_of_span(last)}); write that day's span, or run "
            "the DAG for a day the data holds")
    return span


def config_for_day(config: UseCaseConfig, day: date) -> UseCaseConfig:
    """The config a run for ``day`` executes: with a time split, its eval window ends on that day's span."""
    if config.data.time_split is None:
        return config
    span = span_of_day(config, day)
    day_config = config.with_overrides({"data.split.end_span": span})
    try:
        check_time_split_data(day_config)  # the windows ending there must lie inside the data
    except ConfigError as error:
        raise ConfigError(f"the run for {day} reads span {span}, but {error}") from None
    return day_config
