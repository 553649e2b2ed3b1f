"""``esteira schema freeze``: write MLMD's latest inferred schema to the use case's curated schema file."""
from __future__ import annotations

import argparse

from cli.options import config_from, with_config
from errors import ConfigError


def schema_main(argv: list[str]) -> int:
    schema = argparse.ArgumentParser(prog="esteira schema", description="curate the data schema of a use case")
    schema.add_argument("action", choices=["freeze"],
                        help="freeze: write MLMD's latest inferred schema to validation.schema_file")
    with_config(schema)
    schema.add_argument("--force", action="store_true", help="replace an existing curated schema")
    return _schema(schema.parse_args(argv))


def _schema(args: argparse.Namespace) -> int:
    config = config_from(args)
    from evidence.lineage import LineageError
    from pipeline.schema_freeze import freeze_schema

    try:
        path = freeze_schema(config, force=args.force)
    except LineageError as error:
        raise ConfigError(str(error)) from None
    print(f"wrote the inferred schema to {path}; the pipeline now imports it (ImportSchemaGen)")
    return 0
