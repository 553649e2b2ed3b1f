"""``esteira serve | predict | promote | rollback``: thin command-line front ends over serving/."""
from __future__ import annotations

import os

from errors import EsteiraError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# ---- serve ---------------------------------------------------------------------------------------

def serve_main(argv: list[str]) -> int:
    """Run the server until SIGINT/SIGTERM; same flags as tensorflow_model_server."""
    from serving.config import ConfigError
    from serving.flags import FlagError, parse_flags, usage

    if "--help" in argv or "-h" in argv:
        print(usage())
        return 0
    try:
        flags = parse_flags(argv)
    except FlagError as exc:
        return _fail(str(exc), 2)
    if flags.version:
        import tensorflow as tf

        from serving import __name__ as _  # noqa: F401

        print(f"TensorFlow ModelServer: esteira-0.1.0\nTensorFlow Library: {tf.__version__}")
        return 0
    logging.basicConfig(level=getattr(logging, flags.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from serving.cuda_probe import cuda_probe_filtered

    try:
        with cuda_probe_filtered():  # TensorFlow loads here and touches its devices at the first model load
            from serving.server import ModelServer, freeze_startup_objects, new_event_loop

            server = ModelServer(flags)
            server.build()
    except (ConfigError, OSError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a label pointing at a version that did not load
        message = getattr(exc, "message", None) or str(exc)
        return _fail(f"Failed to start server. Error: {message}")
    logging.getLogger("serving").info("%d startup objects frozen out of the cycle collector", freeze_startup_objects())
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    async def main() -> int:
        try:
            await server.start()
        except OSError as exc:
            await server.stop()
            return _fail(f"cannot open the server ports: {exc}")
        await stop.wait()
        await server.stop()
        return 0

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


# ---- predict -------------------------------------------------------------------------------------

def predict_main(argv: list[str]) -> int:
    """Send a TF Serving REST body (``{"instances": ...}`` or ``{"inputs": ...}``) over REST or gRPC."""
    parser = argparse.ArgumentParser(prog="esteira predict", description=predict_main.__doc__)
    parser.add_argument("--model", required=True, help="model name")
    parser.add_argument("--input", required=True, help="JSON file with a TF Serving predict body ('-' = stdin)")
    parser.add_argument("--server", default="http://127.0.0.1:8501",
                        help="http://host:port for REST (default) or grpc://host:port for gRPC")
    parser.add_argument("--signature", default=None, help="signature name (default: serving_default)")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--label", default=None)
    parser.add_argument("--token", default=os.environ.get("ESTEIRA_TOKEN"), help="bearer token (or ESTEIRA_TOKEN)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    from serving.client import RestClient, ServingClientError
    from serving.protocol.errors import ServingError

    try:
        text = sys.stdin.read() if args.input == "-" else Path(args.input).read_text()
    except OSError as exc:
        return _fail(f"cannot read --input {args.input}: {exc.strerror}")
    try:
        body = json.loads(text)
    except ValueError as exc:
        return _fail(f"--input {args.input} is not valid JSON ({exc}); "
                     f"expected {{\"instances\": [...]}} or {{\"inputs\": ...}}")
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        return _fail("--input must be a JSON object with exactly one of 'instances' or 'inputs'")
    signature = args.signature or body.get("signature_name")
    try:
        if args.server.startswith("grpc://"):
            result = _predict_grpc(args, body, signature)
        else:
            with RestClient(args.server, token=args.token, timeout=args.timeout) as client:
                result = client.predict(args.model, instances=body.get("instances"), inputs=body.get("inputs"),
                                        signature=signature, version=args.version, label=args.label)
                result = {"predictions" if "instances" in body else "outputs": result}
    except ServingClientError as exc:
        return _fail(f"{exc.code}: {exc.message}")
    except ServingError as exc:
        return _fail(f"{exc.code_name}: {exc.message}")
    print(json.dumps(result, indent=2))
    return 0


def _predict_grpc(args: argparse.Namespace, body: dict[str, Any], signature: str | None) -> dict[str, Any]:
    from serving.client import GrpcClient
    from serving.protocol.input_spec import InputSpec
    from serving.protocol.json_codec import parse_predict_request

    with GrpcClient(args.server[len("grpc://"):], token=args.token, timeout=args.timeout) as client:
        spec, signature_map = client.metadata(args.model, args.version, args.label)
        key = signature or "serving_default"
        if key not in signature_map.signature_def:
            from serving.client import ServingClientError

            raise ServingClientError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
        parsed = parse_predict_request(body, InputSpec.of(signature_map.signature_def[key]), key)
        assert parsed is not None  # None only with numeric_only=True
        tensors, _ = parsed
        outputs = client.predict(args.model, tensors, signature=key, version=args.version, label=args.label)
    return {"model_version": spec.version.value, "outputs": {k: _jsonable(v) for k, v in outputs.items()}}


def _jsonable(array: Any) -> Any:
    import numpy as np

    array = np.asarray(array)
    if array.dtype == object:
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.ravel()]
    return array.tolist()


# ---- promote / rollback --------------------------------------------------------------------------

def _label_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", required=True)
    parser.add_argument("--model_config_file", required=True,
                        help="the models.config the server was started with (rewritten on success)")
    parser.add_argument("--server", default="127.0.0.1:8500", help="gRPC host:port of the server (ours or TF Serving)")
    parser.add_argument("--token", default=os.environ.get("ESTEIRA_TOKEN"))
    parser.add_argument("--dry_run", action="store_true", help="print the new labels, change nothing")
    return parser


class LabelChangeError(EsteiraError):
    """The labels could not be changed; the message says why, and nothing was changed."""


def apply_version_labels(model_config_file: str, model_name: str, labels: dict[str, int], *,
                         server: str | None = None, token: str | None = None,
                         dry_run: bool = False) -> tuple[dict[str, int], dict[str, int]]:
    """Set version labels of one model in a models.config: first on the running server (when
    ``server`` is given, by HandleReloadConfigRequest), then in the file, so a refusal changes
    nothing. Returns the labels before and after."""
    from serving.client import GrpcClient, ServingClientError
    from serving.config import ConfigError, read_model_config, write_model_config

    try:
        config = read_model_config(model_config_file)
    except ConfigError as exc:
        raise LabelChangeError(str(exc)) from None
    model = next((m for m in config.model_config_list.config if m.name == model_name), None)
    if model is None:
        names = ", ".join(m.name for m in config.model_config_list.config) or "none"
        raise LabelChangeError(f"model {model_name!r} is not in {model_config_file} (models: {names})")
    before = dict(model.version_labels)
    for label, version in labels.items():
        model.version_labels[label] = version
    after = dict(model.version_labels)
    if dry_run:
        return before, after
    if server:
        try:
            with GrpcClient(server, token=token, retries=1) as client:
                client.reload(config)
        except ServingClientError as exc:
            raise LabelChangeError(
                f"the server refused the new labels ({exc.code}: {exc.message}); nothing was changed") from None
    write_model_config(config, model_config_file)
    return before, after


def _move_label(args: argparse.Namespace, label: str, version: int) -> int:
    try:
        before, after = apply_version_labels(args.model_config_file, args.model, {label: version},
                                             dry_run=True)
        print(f"{args.model}: {before} -> {after}")
        if not args.dry_run:
            apply_version_labels(args.model_config_file, args.model, {label: version},
                                 server=args.server, token=args.token)
    except LabelChangeError as exc:
        return _fail(str(exc))
    return 0


def _labels_of(args: argparse.Namespace) -> dict[str, int] | int:
    from serving.config import ConfigError, read_model_config

    try:
        config = read_model_config(args.model_config_file)
    except ConfigError as exc:
        return _fail(str(exc))
    for model in config.model_config_list.config:
        if model.name == args.model:
            return dict(model.version_labels)
    return _fail(f"model {args.model!r} is not in {args.model_config_file}")


def promote_main(argv: list[str]) -> int:
    """Point the target label (stable) at the version of the source label (canary)."""
    parser = _label_parser("esteira promote", promote_main.__doc__ or "")
    parser.add_argument("--from_label", default="canary")
    parser.add_argument("--to_label", default="stable")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    labels = _labels_of(args)
    if isinstance(labels, int):
        return labels
    if args.from_label not in labels:
        return _fail(f"model {args.model} has no label {args.from_label!r} (labels: {labels or 'none'}); "
                     "set it in the config or pass --from_label")
    return _move_label(args, args.to_label, labels[args.from_label])


def rollback_main(argv: list[str]) -> int:
    """Point the canary label back at the stable version (or at --version), so the canary gets no new traffic."""
    parser = _label_parser("esteira rollback", rollback_main.__doc__ or "")
    parser.add_argument("--label", default="canary", help="label to move (default canary)")
    parser.add_argument("--to_label", default="stable", help="label whose version it takes (default stable)")
    parser.add_argument("--version", type=int, default=None, help="explicit version instead of --to_label")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    labels = _labels_of(args)
    if isinstance(labels, int):
        return labels
    if args.version is None:
        if args.to_label not in labels:
            return _fail(f"model {args.model} has no label {args.to_label!r} "
                         f"(labels: {labels or 'none'}); pass --version")
        target = labels[args.to_label]
    else:
        target = args.version
    return _move_label(args, args.label, target)
