"""TLS and mTLS on gRPC and REST from --ssl_config_file (api/tls.py), against a running server: who is
refused, that the server still answers after, certificate reload without dropping open connections,
and the gateway's remote backend over mTLS. The test makes its own CAs and certificates."""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import text_format
from serving_helpers import MODEL, read_response, start_server
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from serving.api.tls import POLL_SECONDS, ServerTls
from serving.config import ConfigError, SSLConfigProto, read_ssl_config
from serving.demo_model import raw_row

BODY = {"signature_name": "predict_raw", "instances": [raw_row(1)]}


@dataclass(frozen=True)
class Pem:
    key: str
    cert: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str) -> tuple[Pem, Any, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return _pem(key, cert), key, cert


def issue(common_name: str, ca: tuple[Pem, Any, Any], *, server: bool) -> Pem:
    _, ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1)))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return _pem(key, builder.sign(ca_key, hashes.SHA256()))


def _pem(key: Any, cert: Any) -> Pem:
    return Pem(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode(),
               cert.public_bytes(serialization.Encoding.PEM).decode())


def write_ssl_config(path: Path, server: Pem, client_ca: Pem | None, client_verify: bool) -> Path:
    message = SSLConfigProto(server_key=server.key, server_cert=server.cert,
                             custom_ca=client_ca.cert if client_ca else "", client_verify=client_verify)
    staged = path.with_name(path.name + ".new")
    staged.write_text(text_format.MessageToString(message))
    staged.replace(path)  # atomic, as a Secret update
    return path


class Pki:
    """CA "a" signs the first server certificate and the good client's; CA "other" a stranger's client
    certificate; CA "next" the server certificate a reload brings."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = make_ca("ca-a")
        self.other_ca = make_ca("ca-other")
        self.next_ca = make_ca("ca-next")
        self.server = issue("server-a", self.ca, server=True)
        self.next_server = issue("server-next", self.next_ca, server=True)
        self.client = issue("client-a", self.ca, server=False)
        self.stranger = issue("client-other", self.other_ca, server=False)

    def file(self, name: str, text: str) -> str:
        path = self.folder / name
        path.write_text(text)
        return str(path)

    def rest_context(self, ca: tuple[Pem, Any, Any], client: Pem | None) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=ca[0].cert)
        if client is not None:
            stem = hashlib.sha256(client.cert.encode()).hexdigest()[:12]
            context.load_cert_chain(self.file(f"{stem}.crt", client.cert), self.file(f"{stem}.key", client.key))
        return context

    def grpc_credentials(self, ca: tuple[Pem, Any, Any], client: Pem | None) -> grpc.ChannelCredentials:
        if client is None:
            return grpc.ssl_channel_credentials(root_certificates=ca[0].cert.encode())
        return grpc.ssl_channel_credentials(ca[0].cert.encode(), client.key.encode(), client.cert.encode())


@pytest.fixture(scope="module")
def tls(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("tls")
    pki = Pki(tmp)
    config = write_ssl_config(tmp / "ssl.config", pki.server, pki.ca[0], client_verify=True)
    server = start_server(tmp, f"--model_base_path={model_store / MODEL}", f"--model_name={MODEL}",
                          "--file_system_poll_wait_seconds=0", f"--ssl_config_file={config}")
    yield {"server": server, "pki": pki, "config": config, "tmp": tmp,
           "rest": f"https://127.0.0.1:{server.server.rest_port}"}
    server.stop()


def grpc_status(target: str, credentials: grpc.ChannelCredentials | None) -> int:
    """The number of versions GetModelStatus reports, over TLS (or plain text without credentials)."""
    with (grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        return len(stub.GetModelStatus(request, timeout=5).model_version_status)


def test_good_clients_are_answered_on_both_apis(tls) -> None:  # type: ignore[no-untyped-def]
    pki = tls["pki"]
    assert grpc_status(tls["server"].grpc_target, pki.grpc_credentials(pki.ca, pki.client)) == 1
    answer = httpx.post(f"{tls['rest']}/v1/models/{MODEL}:predict", json=BODY,
                        verify=pki.rest_context(pki.ca, pki.client), timeout=10)
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1


@pytest.mark.parametrize("who", ["no client certificate", "a certificate from another CA", "plain text"])
def test_grpc_refuses_and_then_still_answers(tls, who: str) -> None:  # type: ignore[no-untyped-def]
    pki = tls["pki"]
    credentials = {"no client certificate": pki.grpc_credentials(pki.ca, None),
                   "a certificate from another CA": pki.grpc_credentials(pki.ca, pki.stranger),
                   "plain text": None}[who]
    with pytest.raises(grpc.RpcError) as refused:
        grpc_status(tls["server"].grpc_target, credentials)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # the connection never came up
    assert grpc_status(tls["server"].grpc_target, pki.grpc_credentials(pki.ca, pki.client)) == 1


@pytest.mark.parametrize("who", ["no client certificate", "a certificate from another CA", "plain text"])
def test_rest_refuses_and_then_still_answers(tls, who: str) -> None:  # type: ignore[no-untyped-def]
    pki = tls["pki"]
    url = tls["rest"]
    if who == "plain text":
        url, verify = url.replace("https://", "http://"), True
    else:
        verify = pki.rest_context(pki.ca, None if who == "no client certificate" else pki.stranger)
    with pytest.raises(httpx.TransportError):  # handshake refused, or the connection closed unanswered
        httpx.get(f"{url}/v1/models/{MODEL}", verify=verify, timeout=5)
    good = httpx.get(f"{tls['rest']}/v1/models/{MODEL}", verify=pki.rest_context(pki.ca, pki.client), timeout=5)
    assert good.status_code == 200 and good.json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_the_gateway_reaches_a_tls_server_with_its_client_certificate(tls, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pki = tls["pki"]
    target = tls["server"].grpc_target
    gateway = start_server(tmp_path, f"--remote_backend={target}",
                           f"--remote_backend_ca_file={pki.file('gw-ca.crt', pki.ca[0].cert)}",
                           f"--remote_backend_cert_file={pki.file('gw.crt', pki.client.cert)}",
                           f"--remote_backend_key_file={pki.file('gw.key', pki.client.key)}")
    anonymous = start_server(tmp_path, f"--remote_backend={target}",
                             f"--remote_backend_ca_file={pki.file('gw-ca.crt', pki.ca[0].cert)}")
    try:
        answer = httpx.post(f"{gateway.rest_url}/v1/models/{MODEL}:predict", json=BODY, timeout=10)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
        refused = httpx.post(f"{anonymous.rest_url}/v1/models/{MODEL}:predict", json=BODY, timeout=10)
        assert refused.status_code == 503  # UNAVAILABLE: the server behind wants a client certificate
    finally:
        gateway.stop()
        anonymous.stop()


def _raw_get(sock: ssl.SSLSocket, buffer: bytearray) -> int:
    sock.sendall(f"GET /v1/models/{MODEL} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return read_response(sock, buffer)[0]


def test_new_certificates_reach_new_connections_and_open_ones_stay(tls) -> None:  # type: ignore[no-untyped-def]
    pki = tls["pki"]
    rest_port = tls["server"].server.rest_port
    target = tls["server"].grpc_target
    open_rest = pki.rest_context(pki.ca, pki.client).wrap_socket(
        socket.create_connection(("127.0.0.1", rest_port), timeout=10), server_hostname="127.0.0.1")
    buffer = bytearray()
    assert _raw_get(open_rest, buffer) == 200
    open_grpc = grpc.secure_channel(target, pki.grpc_credentials(pki.ca, pki.client))
    stub = model_service_pb2_grpc.ModelServiceStub(open_grpc)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    assert stub.GetModelStatus(request, timeout=5).model_version_status
    try:
        write_ssl_config(tls["config"], pki.next_server, pki.ca[0], client_verify=True)
        deadline = time.monotonic() + 10 * POLL_SECONDS + 5
        while True:  # a new connection that trusts only the next CA succeeds once the reload happened
            try:
                plain = socket.create_connection(("127.0.0.1", rest_port), timeout=5)
                with pki.rest_context(pki.next_ca, pki.client).wrap_socket(plain, server_hostname="127.0.0.1") as fresh:
                    served = x509.load_der_x509_certificate(fresh.getpeercert(binary_form=True))
                    assert _raw_get(fresh, bytearray()) == 200
                break
            except ssl.SSLError:
                assert time.monotonic() < deadline, "the server never served the reloaded certificate"
                time.sleep(0.2)
        assert served.subject == _name("server-next")
        assert grpc_status(target, pki.grpc_credentials(pki.next_ca, pki.client)) == 1
        with pytest.raises(grpc.RpcError):  # new gRPC connections present the new certificate too
            grpc_status(target, pki.grpc_credentials(pki.ca, pki.client))
        assert _raw_get(open_rest, buffer) == 200  # the connection opened before the reload still serves
        assert stub.GetModelStatus(request, timeout=5).model_version_status  # the open channel, unbroken
    finally:
        open_rest.close()
        open_grpc.close()


def test_an_unusable_new_file_keeps_the_certificates_in_use(tls) -> None:  # type: ignore[no-untyped-def]
    pki = tls["pki"]
    mismatched = Pem(pki.server.key, pki.next_server.cert)  # a key that is not the certificate's
    write_ssl_config(tls["config"], mismatched, pki.ca[0], client_verify=True)
    time.sleep(3 * POLL_SECONDS)
    write_ssl_config(tls["config"], pki.server, None, client_verify=False)  # client_verify takes a restart
    time.sleep(3 * POLL_SECONDS)
    assert grpc_status(tls["server"].grpc_target, pki.grpc_credentials(pki.next_ca, pki.client)) == 1
    with pytest.raises(grpc.RpcError):  # still mTLS
        grpc_status(tls["server"].grpc_target, pki.grpc_credentials(pki.next_ca, None))


def test_the_gateway_follows_a_changed_ca_file_without_a_restart(tls, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pki = tls["pki"]  # the server now presents the certificate of the "next" CA (the reload test above)
    ca_file = Path(pki.file("gw-stale-ca.crt", pki.ca[0].cert))
    gateway = start_server(tmp_path, f"--remote_backend={tls['server'].grpc_target}",
                           f"--remote_backend_ca_file={ca_file}",
                           f"--remote_backend_cert_file={pki.file('gw2.crt', pki.client.cert)}",
                           f"--remote_backend_key_file={pki.file('gw2.key', pki.client.key)}")
    url = f"{gateway.rest_url}/v1/models/{MODEL}:predict"
    try:
        assert httpx.post(url, json=BODY, timeout=10).status_code == 503  # the old CA no longer verifies it
        staged = ca_file.with_suffix(".new")
        staged.write_text(pki.next_ca[0].cert)
        staged.replace(ca_file)
        deadline = time.monotonic() + 10
        while (status := httpx.post(url, json=BODY, timeout=10).status_code) != 200:
            assert status == 503 and time.monotonic() < deadline, status
            time.sleep(0.3)
    finally:
        gateway.stop()


def test_bad_ssl_config_files_are_refused_at_start_naming_the_field(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    missing = tmp_path / "missing.config"
    missing.write_text(text_format.MessageToString(SSLConfigProto(server_cert=pki.server.cert)))
    with pytest.raises(ConfigError, match="server_key must hold the PEM text"):
        read_ssl_config(missing)
    no_ca = write_ssl_config(tmp_path / "no-ca.config", pki.server, None, client_verify=True)
    with pytest.raises(ConfigError, match="client_verify: true needs custom_ca"):
        read_ssl_config(no_ca)
    mismatched = write_ssl_config(tmp_path / "mismatch.config", Pem(pki.client.key, pki.server.cert), None, False)
    with pytest.raises(ConfigError, match="server_key must be the private key of server_cert"):
        ServerTls(str(mismatched))
