"""``esteira serve | predict | demo-model``: the model server, a prediction request, the demo model."""
from __future__ import annotations

import os

# Keras 2 (DESIGN decision 6) before TensorFlow loads, also when these are called without cli.main.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import logging
import sys
from pathlib import Path


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def serve_main(argv: list[str]) -> int:
    """Run the server until SIGINT/SIGTERM; same flags as tensorflow_model_server."""
    from serving.workers import tie_to_parent

    tie_to_parent()  # first: a parent that started this server and dies takes it along
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
    from serving.workers import is_worker, serve_processes, signal_ready

    if flags.server_processes > 1 and not is_worker(flags):  # the parent: no TensorFlow here, only workers
        try:
            return serve_processes(flags, argv)
        except OSError as exc:
            return _fail(str(exc))
    from serving.cuda_probe import cuda_probe_filtered

    try:
        with cuda_probe_filtered():  # TensorFlow loads here and touches its devices at the first model load
            from serving.server import ModelServer, freeze_startup_objects, serve_until_signalled

            server = ModelServer(flags)
            server.build()
    except (ConfigError, OSError, FlagError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a label pointing at a version that did not load
        message = getattr(exc, "message", None) or str(exc)
        return _fail(f"Failed to start server. Error: {message}")
    logging.getLogger("serving").info("%d startup objects frozen out of the cycle collector", freeze_startup_objects())
    try:
        serve_until_signalled(server, signal_ready if is_worker(flags) else None)
    except OSError as exc:
        return _fail(f"cannot open the server ports: {exc}")
    return 0

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
    from serving.client import GrpcClient, RestClient, ServingClientError
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
            with GrpcClient(args.server[len("grpc://"):], token=args.token, timeout=args.timeout) as grpc_client:
                result = grpc_client.predict_body(args.model, body, signature=signature, version=args.version,
                                                  label=args.label)
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


def demo_model_main(argv: list[str]) -> int:
    """Export the demo SavedModel."""
    parser = argparse.ArgumentParser(prog="esteira demo-model", description="Export the demo SavedModel.")
    parser.add_argument("base_path")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--warmup_records", type=int, default=0)
    args = parser.parse_args(argv)
    from serving.demo_model import export_demo_model

    print(export_demo_model(args.base_path, args.version, warmup_records=args.warmup_records))
    return 0
