"""A TLS server on loopback for tests of how smrun meets a server's certificate: it accepts
connections on a thread, shakes hands with ``context`` and, when the client trusts it and an
``answer`` is given, sends that HTTP response; a client that gives up during the handshake is
what most tests want, and is no error here. And certificates valid for given dates only."""
from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from statemachine.sim.tls import ServerCert

# `openssl ca` is the one openssl command that takes a validity period's start and end as
# dates (`req -x509 -days` starts now and refuses a negative count): a self-signed CA
# certificate for 127.0.0.1/localhost, as the simulator's, but valid only when asked.
_CA_CONFIG = """\
[ca]
default_ca = this
[this]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any_name
x509_extensions = server
[any_name]
commonName = supplied
[server]
basicConstraints = critical,CA:TRUE
subjectAltName = IP:127.0.0.1,DNS:localhost
"""


def dated_cert(directory: Path, not_before: str, not_after: str) -> ServerCert | None:
    """A certificate valid from ``not_before`` to ``not_after`` (``YYYYMMDDHHMMSSZ``), made in
    ``directory``; None without an ``openssl`` command or when it fails."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    (directory / "ca.cnf").write_text(_CA_CONFIG)
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("01\n")
    steps = [
        [openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "key.pem", "-subj", "/CN=smrun-test", "-out", "req.csr"],
        [openssl, "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "key.pem",
         "-in", "req.csr", "-startdate", not_before, "-enddate", not_after, "-out", "cert.pem"],
    ]
    for cmd in steps:
        if subprocess.run(cmd, cwd=directory, capture_output=True, timeout=30).returncode:
            return None
    return ServerCert(directory / "cert.pem", directory / "key.pem")


@contextmanager
def serving_tls(context: ssl.SSLContext, host: str = "127.0.0.1",
                answer: bytes | None = None) -> Iterator[int]:
    """Serve on ``host`` (an unused port) until the block ends; yields the port."""
    listener = socket.create_server((host, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                raw.settimeout(5)
                with context.wrap_socket(raw, server_side=True) as conn:
                    if answer is None:
                        conn.recv(1)
                    else:
                        conn.recv(65536)
                        conn.sendall(answer)
            except (OSError, ssl.SSLError):
                pass  # the client gave up during the handshake, as it should
            finally:
                raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()
