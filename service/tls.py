"""TLS and mutual TLS for the gRPC port and the metrics endpoint, from PEM files, checked at start and followed
on disk.

The certificate, key and client CA are checked before the server starts (readable, a key that matches the
certificate, a CA that parses), so a mistake stops the start with the file named. grpcio asks for the
server's certificates on every new TLS handshake (`dynamic_ssl_server_credentials`): we answer with the
files' current contents when they changed since the last handshake and still form a valid pair, so
certificates rotated on disk (cert-manager, a cron job) reach new connections without a restart, while
connections already open keep the certificate they shook hands with. A rotation that leaves a broken pair
(the key written before the certificate, say) is logged and the previous pair stays in use until the files
agree again.
"""

from __future__ import annotations

import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)
Fingerprint = tuple[tuple[int, int, int], ...]  # (inode, size, mtime_ns) of each file


class TlsFileError(ValueError):
    """A TLS file is missing or unreadable, or the key does not match the certificate."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key; with `client_ca`, clients must present a
    certificate signed by it (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        return (self.cert, self.key) + ((self.client_ca,) if self.client_ca else ())


def check_tls_files(files: TlsFiles) -> None:
    """Raise TlsFileError naming the file that is missing, unreadable, or does not fit the others."""
    for name, path in (("certificate", files.cert), ("key", files.key), ("client CA", files.client_ca)):
        if path is None:
            continue
        try:
            Path(path).read_bytes()
        except OSError as exc:
            raise TlsFileError(f"TLS {name} file {path} is not readable: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except ssl.SSLError as exc:
        raise TlsFileError(
            f"TLS key {files.key} does not match certificate {files.cert}, or one is not PEM ({exc.reason or exc})"
        ) from None
    if files.client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(files.client_ca))
        except ssl.SSLError as exc:
            reason = exc.reason or exc
            raise TlsFileError(f"TLS client CA {files.client_ca} is not a PEM certificate ({reason})") from None


class RotatingServerCredentials:
    """grpcio server credentials whose certificates follow the files (see the module docstring)."""

    def __init__(self, files: TlsFiles):
        self.files = files
        self._lock = threading.Lock()  # grpcio calls the fetcher from its own threads
        self._fingerprint = self._stat()
        self._refused: Fingerprint | None = None  # files seen changed but unusable
        self.rotations = 0

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(),
            self._fetch,
            require_client_authentication=self.files.client_ca is not None,
        )

    def _stat(self) -> Fingerprint | None:
        try:
            return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in (p.stat() for p in self.files.paths()))
        except OSError:
            return None

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        ca = self.files.client_ca.read_bytes() if self.files.client_ca else None
        pair = (self.files.key.read_bytes(), self.files.cert.read_bytes())
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=ca)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by grpcio on each handshake: a new configuration when the files changed and agree, else None
        (keep the current one)."""
        with self._lock:
            now = self._stat()
            if now is None or now in (self._fingerprint, self._refused):
                return None
            try:
                check_tls_files(self.files)
                configuration = self._configuration()
            except (TlsFileError, OSError) as exc:  # said once per state of the files, not per handshake
                log.error("TLS files changed but cannot be used yet (%s); keeping the previous certificate", exc)
                self._refused = now
                return None
            self._fingerprint = now
            self.rotations += 1
            log.info("TLS certificate files changed on disk; new connections use them")
            return configuration
