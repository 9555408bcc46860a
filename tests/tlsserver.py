"""A TLS server on loopback for tests of how smrun meets a server's certificate: it accepts
connections on a thread, shakes hands with ``context`` and, when the client trusts it and an
``answer`` is given, sends that HTTP response; a client that gives up during the handshake is
what most tests want, and is no error here."""
from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
