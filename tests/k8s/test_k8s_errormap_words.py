"""A request that gets no answer, in smrun's words (``errormap.translate``): each cause the
library raises becomes a few words after the cluster and its server, never a repr; a TLS
certificate that does not verify is ``ClusterNotTrusted`` (permanent: not retried) with a hint.

Two kinds of failures: built here as urllib3 2.x chains them (``MaxRetryError`` -> its
``reason`` -> ``raise ... from`` an ``OSError``), for causes a test cannot provoke on loopback
(a timeout, no route, DNS); and real ones, from urllib3 against a closed port and a local TLS
server whose certificate the client does not trust.
"""
from __future__ import annotations

import errno
import http.client
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
import urllib3.exceptions as u3
from urllib3.util.retry import Retry

from statemachine import errors
from statemachine.k8s import retry
from statemachine.k8s.errormap import shown_server, transport_cause, translate
from statemachine.sim.tls import ServerCert, make_cert
from tlsserver import dated_cert, serving_tls

SERVER = "https://api.east.example:6443"


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    """``outer`` raised ``from inner``, as urllib3 raises it."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as raised:
        return raised


def _max_retry(reason: BaseException) -> BaseException:
    return u3.MaxRetryError(None, "/version", reason)  # type: ignore[arg-type]


def _new_connection(err: OSError) -> BaseException:
    return _chained(u3.NewConnectionError(
        None, f"HTTPSConnection(host='api.east.example', port=6443): Failed to establish a new "  # type: ignore[arg-type]
        f"connection: {err}"), err)


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                          f"failed: {message} (_ssl.c:1006)")
    exc.verify_code = code
    exc.verify_message = message
    return exc


def _ssl_wrapped(exc: ssl.SSLError) -> BaseException:
    return _max_retry(_chained(u3.SSLError(exc), exc))


def _handshake_error(reason: str) -> ssl.SSLError:
    """A handshake that failed before any certificate was judged (OpenSSL's ``reason``)."""
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')} (_ssl.c:1006)")
    exc.reason = reason
    return exc


UNREACHABLE = {
    "refused": (_max_retry(_new_connection(ConnectionRefusedError(
        errno.ECONNREFUSED, "Connection refused"))), "connection refused"),
    "no-route": (_max_retry(_new_connection(OSError(errno.EHOSTUNREACH, "No route to host"))),
                 "no route to host"),
    "network": (_max_retry(_new_connection(OSError(errno.ENETUNREACH, "Network is unreachable"))),
                "network unreachable"),
    "dns": (_max_retry(_chained(u3.NameResolutionError(
        "api.east.example", None, socket.gaierror(-2, "Name or service not known")),  # type: ignore[arg-type]
        socket.gaierror(-2, "Name or service not known"))), "host name not resolved"),
    "connect-timeout": (_max_retry(_chained(u3.ConnectTimeoutError(
        None, "Connection to api.east.example timed out. (connect timeout=10)"),
        TimeoutError("timed out"))), "connection timed out after 10 s"),
    "read-timeout": (u3.ReadTimeoutError(
        None, "/version", "Read timed out. (read timeout=30)"),  # type: ignore[arg-type]
        "no answer in time after 30 s"),
    "reset": (u3.ProtocolError("Connection aborted.", ConnectionResetError(
        errno.ECONNRESET, "Connection reset by peer")), "connection reset by the server"),
    "disconnected": (u3.ProtocolError("Connection aborted.", http.client.RemoteDisconnected(
        "Remote end closed connection without response")), "connection closed by the server"),
    "not-tls": (_ssl_wrapped(_handshake_error("WRONG_VERSION_NUMBER")),
                "TLS handshake failed (wrong version number)"),
    "handshake": (_ssl_wrapped(ssl.SSLError(1, "EOF occurred")), "TLS handshake failed"),
    "bare-timeout": (TimeoutError("timed out"), "timed out"),
}


@pytest.mark.parametrize(("raised", "words"), UNREACHABLE.values(), ids=UNREACHABLE.keys())
def test_each_transport_failure_is_unreachable_in_words(raised: BaseException, words: str) -> None:
    mapped = translate(raised, cluster="east", server=SERVER)
    assert type(mapped) is errors.ClusterUnreachable
    assert mapped.transient and mapped.exit_code == 3
    assert str(mapped) == f"cluster east: cannot reach the API server at {SERVER}: {words}"
    assert (mapped.cluster, mapped.server, mapped.cause) == ("east", SERVER, words)
    assert transport_cause(raised) == words


@pytest.mark.parametrize("raised", [e for e, _ in UNREACHABLE.values()], ids=UNREACHABLE.keys())
def test_no_library_text_in_the_message(raised: BaseException) -> None:
    text = str(translate(raised, cluster="east", server=SERVER))
    for library in ("HTTPSConnection", "port=", "Errno", "Error(", " at 0x", "Max retries",
                    "_ssl.c", "[SSL"):
        assert library not in text, text


def test_without_cluster_or_server_the_message_says_less() -> None:
    raised = UNREACHABLE["refused"][0]
    assert str(translate(raised)) == "cannot reach the API server: connection refused"
    assert str(translate(raised, cluster="east")) == \
        "cluster east: cannot reach the API server: connection refused"


def test_an_unknown_cause_is_its_class_and_text_without_reprs() -> None:
    odd = u3.HTTPError("<urllib3.connection.HTTPSConnection object at 0x7f3a2c>: something odd")
    assert transport_cause(odd) == "HTTPError: something odd"


UNTRUSTED = {
    "unknown-ca": (20, "unable to get local issuer certificate",
                   "certificate signed by an unknown CA", "certificate-authority-data"),
    "self-signed": (18, "self-signed certificate",
                    "certificate signed by an unknown CA", "certificate-authority-data"),
    "expired": (10, "certificate has expired", "certificate has expired",
                "must be renewed, or this machine's clock is wrong"),
    "not-yet-valid": (9, "certificate is not yet valid", "certificate is not yet valid",
                      "this machine's clock is wrong"),
    "hostname": (62, "Hostname mismatch, certificate is not valid for 'api.east.example'.",
                 "certificate is not valid for 'api.east.example'", "check the server URL"),
    "ip": (64, "IP address mismatch, certificate is not valid for '10.0.0.1'.",
           "certificate is not valid for '10.0.0.1'", "tls-server-name"),
    "other": (26, "unsupported certificate purpose",
              "certificate verify failed: unsupported certificate purpose",
              "certificate-authority-data"),
}


@pytest.mark.parametrize(("code", "message", "cause", "hint"), UNTRUSTED.values(),
                         ids=UNTRUSTED.keys())
def test_a_certificate_that_does_not_verify_is_not_trusted(code: int, message: str, cause: str,
                                                           hint: str) -> None:
    mapped = translate(_ssl_wrapped(_verify_error(code, message)), cluster="east", server=SERVER)
    assert type(mapped) is errors.ClusterNotTrusted
    assert isinstance(mapped, errors.PermanentClusterError)
    assert not mapped.transient and mapped.exit_code == 3
    text = str(mapped)
    assert text.startswith(f"cluster east: TLS verification of the API server at {SERVER} "
                           f"failed: {cause}; "), text
    assert hint in text.split("; ", 1)[1], text
    assert (mapped.cluster, mapped.server, mapped.cause) == ("east", SERVER, cause)
    assert "\n" not in text and "_ssl.c" not in text and "[SSL" not in text


def test_urllib3s_own_hostname_check_is_not_trusted_too() -> None:
    mismatch = type("CertificateError", (ValueError,), {})("hostname 'x' doesn't match 'y'")
    mapped = translate(_max_retry(_chained(u3.SSLError(mismatch), mismatch)), server=SERVER)
    assert type(mapped) is errors.ClusterNotTrusted
    assert "certificate is not valid for the server's name" in str(mapped)


def test_a_certificate_failure_is_tried_once() -> None:
    tries: list[int] = []

    def request() -> None:
        tries.append(1)
        raised = _ssl_wrapped(_verify_error(20, "unable to get local issuer certificate"))
        mapped = translate(raised, cluster="east", server=SERVER)
        assert mapped is not None
        raise mapped from raised

    with pytest.raises(errors.ClusterNotTrusted):
        retry.call(request, policy=retry.RetryPolicy(), verb="discover", what="cluster east",
                   sleep=lambda _: pytest.fail("a certificate failure was retried"))
    assert tries == [1]


def test_credentials_in_the_server_url_are_not_shown() -> None:
    server = "https://admin:sekrit-password@api.east.example:6443/prefix"
    assert shown_server(server) == "https://api.east.example:6443/prefix"
    assert shown_server(SERVER) == SERVER
    for raised in (UNREACHABLE["refused"][0],
                   _ssl_wrapped(_verify_error(20, "unable to get local issuer certificate"))):
        mapped = translate(raised, cluster="east", server=server)
        assert mapped is not None and "sekrit" not in str(mapped) and "admin" not in str(mapped)
        assert getattr(mapped, "server") == "https://api.east.example:6443/prefix"


# -- real failures, from urllib3 as the kubernetes client configures it -------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerCert, ServerCert]:
    """The server's certificate (SAN 127.0.0.1 and localhost) and another, unrelated one."""
    made = [make_cert(tmp_path_factory.mktemp(name)) for name in ("server", "other")]
    if made[0] is None or made[1] is None:
        pytest.skip("no openssl command")
    return made[0], made[1]


@pytest.fixture(scope="module")
def tls_port(certs: tuple[ServerCert, ServerCert]) -> Iterator[int]:
    """A TLS server on loopback that answers every request 200 (when the client trusts it)."""
    with serving_tls(certs[0].server_context(), answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                     b"Connection: close\r\n\r\n{}") as port:
        yield port


def _get(url: str, ca: Path, server_hostname: str | None = None) -> BaseException:
    pool = urllib3.PoolManager(ca_certs=str(ca), server_hostname=server_hostname,
                               retries=Retry(total=3, connect=0, read=0, other=0),
                               timeout=urllib3.Timeout(connect=5, read=5))
    try:
        pool.request("GET", url)
    except Exception as exc:  # noqa: BLE001 - the failure is what is tested
        return exc
    finally:
        pool.clear()
    raise AssertionError(f"GET {url} succeeded")


def test_the_tls_server_answers_a_client_that_trusts_it(
        certs: tuple[ServerCert, ServerCert], tls_port: int) -> None:
    pool = urllib3.PoolManager(ca_certs=str(certs[0].cert_path), retries=False)
    assert pool.request("GET", f"https://127.0.0.1:{tls_port}/version").status == 200


def test_real_refused_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens
    server = f"https://127.0.0.1:{port}"
    mapped = translate(_get(server + "/version", Path(ssl.get_default_verify_paths().cafile
                                                       or "/dev/null")),
                       cluster="target", server=server)
    assert type(mapped) is errors.ClusterUnreachable
    assert str(mapped) == f"cluster target: cannot reach the API server at {server}: " \
                          "connection refused"


@pytest.mark.parametrize(("how", "cause", "hint"), [
    ("other-ca", "certificate signed by an unknown CA", "certificate-authority-data"),
    ("wrong-name", "certificate is not valid for 'api.east.example'", "tls-server-name"),
    ("wrong-ip", "certificate is not valid for '127.0.0.2'", "check the server URL"),
])
def test_real_certificate_failures(certs: tuple[ServerCert, ServerCert], tls_port: int,
                                   how: str, cause: str, hint: str) -> None:
    server = f"https://127.0.0.1:{tls_port}"
    ca = certs[1].cert_path if how == "other-ca" else certs[0].cert_path
    name = {"other-ca": None, "wrong-name": "api.east.example", "wrong-ip": "127.0.0.2"}[how]
    mapped = translate(_get(server + "/version", ca, name), cluster="target", server=server)
    assert type(mapped) is errors.ClusterNotTrusted, mapped
    assert str(mapped).startswith(
        f"cluster target: TLS verification of the API server at {server} failed: {cause}; "), \
        str(mapped)
    assert hint in str(mapped)


@pytest.mark.parametrize(("dates", "cause", "hint"), [
    (("20200101000000Z", "20200102000000Z"), "certificate has expired",
     "must be renewed, or this machine's clock is wrong"),
    (("20990101000000Z", "20990102000000Z"), "certificate is not yet valid",
     "this machine's clock is wrong"),
], ids=["expired", "not-yet-valid"])
def test_real_certificates_out_of_their_dates(tmp_path: Path, dates: tuple[str, str], cause: str,
                                              hint: str) -> None:
    """A server whose certificate the client trusts, but not on this date: urllib3's own
    failure, translated."""
    cert = dated_cert(tmp_path, *dates)
    if cert is None:
        pytest.skip("no openssl command")
    with serving_tls(cert.server_context()) as port:
        server = f"https://127.0.0.1:{port}"
        mapped = translate(_get(server + "/version", cert.cert_path), cluster="target",
                           server=server)
    assert type(mapped) is errors.ClusterNotTrusted, mapped
    assert str(mapped).startswith(
        f"cluster target: TLS verification of the API server at {server} failed: {cause}; "), \
        str(mapped)
    assert hint in str(mapped), str(mapped)
    assert mapped.cause == cause
