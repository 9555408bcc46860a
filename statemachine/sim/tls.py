"""A throwaway self-signed certificate for the simulated API servers.

Why TLS on loopback: kubectl (client-go's ``clientcmd``) only sends a kubeconfig user's bearer
token when the server URL is ``https``; over plain http every request would be anonymous, and
per-user RBAC could not be exercised with kubectl. The certificate (EC P-256, SAN
``IP:127.0.0.1``/``DNS:localhost``, valid for 7 days) is made with the ``openssl`` command at
start-up, kept in a temporary directory, and its PEM goes into the kubeconfig as
``certificate-authority-data``. Without ``openssl`` the servers fall back to plain http.
"""
from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerCert:
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def pem(self) -> bytes:
        return self.cert_path.read_bytes()


def make_cert(directory: Path) -> ServerCert | None:
    """Create the certificate in ``directory``; ``None`` if ``openssl`` is not available."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "sim-ca.crt", directory / "sim-ca.key"
    cmd = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "7",
           "-subj", "/CN=smrun-sim", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
           "-addext", "basicConstraints=critical,CA:TRUE"]
    proc = subprocess.run(cmd, capture_output=True, timeout=30)
    if proc.returncode != 0:
        return None
    key.chmod(0o600)
    return ServerCert(cert, key)
