"""esteira serve's flag errors and esteira predict over REST and gRPC (cli/serve.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from serving_helpers import MODEL

from cli.serve import predict_main, serve_main
from serving.demo_model import raw_row

BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


def test_cli_flag_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    assert serve_main(["--model_base_path=/x", "--bogus=1"]) == 2
    assert "unknown argument: --bogus=1" in capsys.readouterr().err
    assert serve_main([]) == 2
    assert "model_base_path" in capsys.readouterr().err
    assert serve_main(["--model_base_path=/x", "--batching_parameters_file=/b"]) == 2
    assert "enable_batching" in capsys.readouterr().err
    assert serve_main(["--model_config_file=/does/not/exist"]) == 1
    assert "cannot read model config file" in capsys.readouterr().err


def test_cli_predict_rest_and_grpc(shared_server, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    body = tmp_path / "input.json"
    body.write_text(json.dumps(BODY))
    assert predict_main(["--model", MODEL, "--input", str(body),
                        "--server", shared_server.rest_url, "--version", "1"]) == 0
    rest = json.loads(capsys.readouterr().out)["predictions"]
    assert predict_main(["--model", MODEL, "--input", str(body), "--server", "grpc://" + shared_server.grpc_target,
                         "--version", "1"]) == 0
    grpc_out = json.loads(capsys.readouterr().out)["outputs"]["probabilities"]
    assert np.allclose(rest, grpc_out)
    assert predict_main(["--model", "nope", "--input", str(body), "--server", shared_server.rest_url]) == 1
    assert "NOT_FOUND: Servable not found for request: Latest(nope)" in capsys.readouterr().err
    assert predict_main(["--model", MODEL, "--input", str(tmp_path / "missing.json")]) == 1
