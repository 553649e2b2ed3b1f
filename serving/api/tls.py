"""TLS and mTLS on both APIs from TF Serving's ``--ssl_config_file``, reloaded when the file changes.

gRPC takes grpcio's dynamic server credentials: gRPC asks :meth:`ServerTls.grpc_certificates` at every
new handshake, so new connections get new certificates and open ones keep theirs. REST takes uvicorn's
TLS settings (``ssl_certfile``, ``ssl_keyfile``, ``ssl_ca_certs``, ``ssl_cert_reqs``, files written from the
SSLConfig's PEM text into a private folder) and uvicorn's ``ssl_context_factory``, which adds an SNI
callback to the context uvicorn built: every handshake (with or without SNI) is switched to the newest
context, so a reload reaches new connections without touching the listening socket or open connections.

``client_verify`` cannot change on reload (gRPC fixes it when the port opens): a file that changes it is
refused with an error in the log, the old certificates stay, and a restart applies it. So is a file whose
key does not match its certificate, or whose PEM does not parse.
"""
from __future__ import annotations

import logging
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from uvicorn.config import SSL_PROTOCOL_VERSION, create_ssl_context

from serving.config import ConfigError, SslConfig, read_ssl_config

log = logging.getLogger("serving")

POLL_SECONDS = 1.0  # how often the file is compared with what is served


@dataclass(frozen=True)
class _Files:
    """One SSLConfig written as PEM files, for uvicorn (which takes file names)."""

    folder: Path
    key: Path
    cert: Path
    ca: Path | None


class ServerTls:
    """The server's certificates, shared by gRPC and REST; :meth:`reload_if_changed` swaps them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.config = read_ssl_config(path)
        self._text = Path(path).read_text()
        self._root = Path(tempfile.mkdtemp(prefix="esteira-tls-"))  # mode 0700: the key never leaves it
        self._lock = threading.Lock()
        self.generation = 0
        self._files = self._write(self.config)
        try:
            self._context = self._rest_context(self._files)  # checks that the key matches the certificate
        except ssl.SSLError as exc:
            self.close()
            raise ConfigError(f"{path}: the server key, certificate or custom_ca is not usable ({exc.reason or exc}); "
                              "server_key must be the private key of server_cert's first certificate") from None

    # ---- gRPC --------------------------------------------------------------------------------

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for one gRPC port (each port asks for new certificates on its own)."""
        seen = [self.generation]

        def fetch() -> Any:  # called on a gRPC thread at each handshake; None keeps the current certificates
            with self._lock:
                if seen[0] == self.generation:
                    return None
                seen[0] = self.generation
                return self._grpc_configuration(self.config)

        return grpc.dynamic_ssl_server_credentials(self._grpc_configuration(self.config), fetch,
                                                   require_client_authentication=self.config.client_verify)

    @staticmethod
    def _grpc_configuration(config: SslConfig) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(config.server_key.encode(), config.server_cert.encode())],
            root_certificates=config.custom_ca.encode() or None)

    # ---- REST (uvicorn) ----------------------------------------------------------------------

    def uvicorn_settings(self) -> dict[str, Any]:
        """uvicorn.Config's TLS keywords: the files of the first SSLConfig, and the factory that makes
        every handshake use the newest one."""
        files = self._files
        return {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key),
                "ssl_ca_certs": str(files.ca) if files.ca else None,
                "ssl_cert_reqs": ssl.CERT_REQUIRED if self.config.client_verify else ssl.CERT_NONE,
                "ssl_context_factory": self._uvicorn_context}

    def _uvicorn_context(self, _config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        context = default()  # uvicorn's own, from the settings above
        context.sni_callback = self._select
        return context

    def _select(self, connection: Any, _server_name: str | None, context: ssl.SSLContext) -> None:
        current = self._context
        if current is not context:
            connection.context = current

    def _rest_context(self, files: _Files) -> ssl.SSLContext:
        return create_ssl_context(certfile=files.cert, keyfile=files.key, password=None,
                                  ssl_version=SSL_PROTOCOL_VERSION,
                                  cert_reqs=ssl.CERT_REQUIRED if self.config.client_verify else ssl.CERT_NONE,
                                  ca_certs=files.ca, ciphers="TLSv1")  # uvicorn's default ciphers

    # ---- reload ------------------------------------------------------------------------------

    def reload_if_changed(self) -> bool:
        """Read the file; when it changed and is usable, serve it to new connections. True when swapped."""
        try:
            text = Path(self.path).read_text()
        except OSError as exc:
            log.error("cannot read --ssl_config_file %s (%s); keeping the certificates in use", self.path, exc.strerror)
            return False
        if text == self._text:
            return False
        try:
            config = read_ssl_config(self.path)
        except ConfigError as exc:
            log.error("--ssl_config_file changed but is not usable, keeping the certificates in use: %s", exc)
            return False
        if config.client_verify != self.config.client_verify:
            log.error("--ssl_config_file changes client_verify to %s; that takes a restart (gRPC fixes it when "
                      "the port opens); keeping the certificates in use", str(config.client_verify).lower())
            return False
        files = self._write(config)
        try:
            context = self._rest_context(files)
        except ssl.SSLError as exc:
            shutil.rmtree(files.folder, ignore_errors=True)
            log.error("--ssl_config_file changed but its key, certificate or custom_ca is not usable (%s); "
                      "keeping the certificates in use", exc.reason or exc)
            return False
        with self._lock:
            old = self._files
            self.config, self._text, self._files, self._context = config, text, files, context
            self.generation += 1
        shutil.rmtree(old.folder, ignore_errors=True)  # loaded into their contexts; not read again
        log.info("TLS certificates reloaded from %s (new connections use them)", self.path)
        return True

    def _write(self, config: SslConfig) -> _Files:
        folder = Path(tempfile.mkdtemp(dir=self._root))
        key, cert = folder / "server.key", folder / "server.crt"
        for path, text in ((key, config.server_key), (cert, config.server_cert)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
        ca = None
        if config.custom_ca:
            ca = folder / "ca.crt"
            ca.write_text(config.custom_ca)
        return _Files(folder, key, cert, ca)

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
