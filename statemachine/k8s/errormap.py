"""Translate failures of the ``kubernetes`` client into smrun's error tree, in one place.

The ``kubernetes`` library raises ``ApiException`` (and ``kubernetes.dynamic``'s ``DynamicApiError``
subclasses of it) for HTTP error answers, and lets ``urllib3`` / socket errors through for transport
failures. :func:`translate` turns each into a :class:`statemachine.errors.ClusterError` subclass, chosen
by HTTP status so callers decide on retrying from the *type* (``transient``), never from a string.

Decisions:

- The message is the API server's Status ``message`` only, truncated to :data:`MAX_MESSAGE`. Never
  the response body, headers or the request: a Secret manifest can end up in an error, and
  ``DynamicApiError.__str__`` prints all of them.
- A request that got no answer is ``ClusterUnreachable`` (transient), with a message in smrun's
  words: the cluster, its server URL and the cause in a few words (:func:`transport_cause`);
  the library's text, with its reprs and object addresses, stays in the exception chain, which
  ``--debug`` prints. One exception: a TLS certificate that does not verify (unknown CA, wrong
  name, expired) is ``ClusterNotTrusted``, permanent: retrying cannot change a certificate, so
  the admin gets the cause and what to check at once, not after a minute of retries. Other TLS
  failures (a handshake cut short, a server that does not speak TLS) stay transient.
  The server URL is shown without a ``user:password@`` part (:func:`shown_server`); a token or
  client key never reaches these messages (the transport errors carry no headers).
- This module does not import ``kubernetes`` (only ``client.py`` does): API errors are recognised by
  shape (an ``int`` ``status`` plus ``body``/``headers`` attributes), transport errors by the standard
  library and ``urllib3`` base classes. That also keeps the mapping testable without a server.
- It does not retry or log; see ``retry.py``.
"""
from __future__ import annotations

import email.utils
import errno
import http.client
import json
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from statemachine.errors import (
    ClusterError,
    ClusterNotTrusted,
    ClusterUnreachable,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    PermanentClusterError,
    TransientClusterError,
)

MAX_MESSAGE = 300
"""Longest error message kept from a Status, in characters."""

MAX_RETRY_AFTER = 60.0
"""A Retry-After larger than this (seconds) is clamped: the retry budget bounds the total wait anyway."""

# Exact statuses first; ranges (5xx, other 4xx) are handled in ``class_for_status``.
_BY_STATUS: dict[int, type[ClusterError]] = {
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TransientClusterError,
}


def class_for_status(status: int | None) -> type[ClusterError]:
    """The smrun error class for an HTTP status (``None`` or 0: no answer at all → unreachable)."""
    if not status:
        return ClusterUnreachable
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if 500 <= status <= 599:
        return TransientClusterError
    return PermanentClusterError


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive header lookup on whatever mapping the client handed us."""
    if not headers:
        return None
    try:
        value = headers.get(name)
        if value is not None:
            return str(value)
        items = headers.items()
    except AttributeError:
        return None
    lowered = name.lower()
    for key, val in items:
        if str(key).lower() == lowered:
            return str(val)
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), clamped; else None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def status_fields(body: Any) -> tuple[str, str, int | None]:
    """(message, reason, code) from a metav1.Status given as dict, JSON text or bytes; blanks if not one."""
    status: Any = body
    if isinstance(status, bytes):
        status = status.decode("utf-8", errors="replace")
    if isinstance(status, str):
        try:
            status = json.loads(status)
        except ValueError:
            return "", "", None
    if not isinstance(status, Mapping):
        return "", "", None
    code = status.get("code")
    return (str(status.get("message") or ""), str(status.get("reason") or ""),
            code if isinstance(code, int) else None)


def from_status(status: Mapping[str, Any], *, retry_after: float | None = None) -> ClusterError:
    """An error from a metav1.Status object, as a watch ERROR event carries it."""
    message, reason, code = status_fields(status)
    cls = class_for_status(code)
    return cls(_truncate(message or f"{code} {reason}".strip()), status=code, reason=reason,
               retry_after=retry_after)


def _is_api_exception(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "status", None), int) and hasattr(exc, "body") \
        and hasattr(exc, "headers")


def _from_api_exception(exc: Any) -> ClusterError:
    code: int = exc.status
    message, reason, _ = status_fields(exc.body)
    # A watch ERROR event is raised by the client as ApiException(status, reason="Reason: message")
    # with no body: the text after the first ": " is the server's message.
    http_reason = str(exc.reason or "")
    if not message and ": " in http_reason:
        reason, _, message = http_reason.partition(": ")
    reason = reason or http_reason
    retry_after = parse_retry_after(_header(exc.headers, "Retry-After"))
    cls = class_for_status(code)
    return cls(_truncate(message or f"{code} {http_reason}".strip()), status=code, reason=reason,
               retry_after=retry_after)


def _transport_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [ConnectionError, TimeoutError, http.client.HTTPException,
                                        ssl.SSLError]
    import urllib3.exceptions  # a dependency of kubernetes; cheap to import, unlike kubernetes

    types.append(urllib3.exceptions.HTTPError)
    return tuple(types)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps, outermost first: urllib3's ``MaxRetryError.reason``, its
    ``SSLError(ssl_error)`` argument, ``__cause__`` and ``__context__``."""
    found: list[BaseException] = []
    todo = [exc]
    while todo and len(found) < 20:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        wrapped = [getattr(current, "reason", None), *current.args, current.__cause__,
                   current.__context__]
        todo += [w for w in wrapped if isinstance(w, BaseException)]
    return found


# Decision: the causes an admin can act on, in a few words of smrun's (kubectl says much the
# same); the library's text (reprs, pool names, object addresses) is for --debug, which prints
# the chain of exceptions. The first that matches, in this order, wins.
_ERRNO_WORDS: dict[int, str] = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by the server",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed by the server",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.EHOSTDOWN: "host is down",
    errno.ETIMEDOUT: "connection timed out",
}

# OpenSSL's X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code) -> (cause, hint).
_UNKNOWN_CA = ("certificate signed by an unknown CA",
               "check the certificate-authority-data (or certificate-authority) of this cluster "
               "in the kubeconfig")
_WRONG_NAME_HINT = "check the server URL (or tls-server-name) of this cluster in the kubeconfig"
_VERIFY_CODES: dict[int, tuple[str, str]] = {
    2: _UNKNOWN_CA,   # unable to get issuer certificate
    18: _UNKNOWN_CA,  # self-signed certificate
    19: _UNKNOWN_CA,  # self-signed certificate in certificate chain
    20: _UNKNOWN_CA,  # unable to get local issuer certificate
    21: _UNKNOWN_CA,  # unable to verify the first certificate
    9: ("certificate is not yet valid",
        "the server's certificate starts later, or this machine's clock is wrong"),
    10: ("certificate has expired",
         "the server's certificate must be renewed, or this machine's clock is wrong"),
    23: ("certificate has been revoked", "the server needs a new certificate"),
}
_MISMATCH_CODES = (62, 64)  # hostname mismatch, IP address mismatch


def _tls_failure(chain: list[BaseException]) -> tuple[str, str] | None:
    """(cause, hint) when the server's certificate failed verification, else ``None``."""
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError):
            code = getattr(exc, "verify_code", None)
            message = str(getattr(exc, "verify_message", "") or "")
            if code in _VERIFY_CODES:
                return _VERIFY_CODES[code]
            if code in _MISMATCH_CODES:
                name = re.search(r"not valid for '([^']*)'", message)
                return (f"certificate is not valid for {name.group(1)!r}" if name
                        else "certificate is not valid for the server's name", _WRONG_NAME_HINT)
            return (f"certificate verify failed: {message or code}", _UNKNOWN_CA[1])
        if type(exc).__name__ == "CertificateError":  # urllib3's own hostname check
            return "certificate is not valid for the server's name", _WRONG_NAME_HINT
    return None


def _seconds(text: str) -> str:
    found = re.search(r"timeout=([0-9.]+)", text)
    return f" after {float(found.group(1)):g} s" if found else ""


def _strip_reprs(text: str) -> str:
    """The library's text without object reprs (``<... at 0x7f...>``) or connection prefixes."""
    text = re.sub(r"<[^<>]*\bat 0x[0-9a-fA-F]+>:?\s*", "", text)
    text = re.sub(r"\bHTTPS?Connection(?:Pool)?\([^()]*\):\s*", "", text)
    return text.strip() or "no detail"


def transport_cause(exc: BaseException) -> str:
    """What went wrong with a request that got no answer, in a few words (``connection refused``,
    ``host name not resolved``, ``connection timed out after 10 s``...); never a repr."""
    import urllib3.exceptions as u3

    chain = _chain(exc)
    tls = _tls_failure(chain)
    if tls is not None:
        return tls[0]
    for e in chain:
        if isinstance(e, (u3.NameResolutionError, socket.gaierror)):
            return "host name not resolved"
        # NewConnectionError is a ConnectTimeoutError too (urllib3 keeps it so): its cause is
        # the OSError below.
        if isinstance(e, u3.ConnectTimeoutError) and not isinstance(e, u3.NewConnectionError):
            return f"connection timed out{_seconds(str(e))}"
        if isinstance(e, u3.ReadTimeoutError):
            return f"no answer in time{_seconds(str(e))}"
        if isinstance(e, u3.ProxyError):
            return "the proxy failed"
    for e in chain:
        if isinstance(e, OSError) and e.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[e.errno]
        if isinstance(e, ssl.SSLError) and not isinstance(e, ssl.SSLCertVerificationError):
            reason = str(getattr(e, "reason", "") or "").replace("_", " ").lower()
            return f"TLS handshake failed ({reason})" if reason else "TLS handshake failed"
        if isinstance(e, http.client.RemoteDisconnected):
            return "connection closed by the server"
    for e in chain:
        if isinstance(e, TimeoutError):
            return "timed out"
    inner = chain[-1]
    return _truncate(f"{type(inner).__name__}: {_strip_reprs(str(inner))}")


def shown_server(server: str) -> str:
    """``server`` as a message may show it: without a ``user:password@`` part (a kubeconfig may
    put credentials in the URL; they must not reach a terminal, a log or a Plan's status)."""
    parts = urllib.parse.urlsplit(server)
    if "@" not in parts.netloc:
        return server
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _place(cluster: str, server: str) -> tuple[str, str]:
    return (f"cluster {cluster}: " if cluster else "",
            f"the API server at {shown_server(server)}" if server else "the API server")


def translate(exc: BaseException, *, cluster: str = "", server: str = "") -> ClusterError | None:
    """The smrun error for a client failure, or ``None`` if ``exc`` is not a cluster failure.

    ``ClusterError`` passes through unchanged. Callers raise the result ``from exc``.
    ``cluster`` (smrun's name) and ``server`` (its URL) go into the message of a failure to
    reach it: ``ClusterUnreachable``, or ``ClusterNotTrusted`` (permanent) when its TLS
    certificate does not verify.
    """
    if isinstance(exc, ClusterError):
        return exc
    if _is_api_exception(exc):
        return _from_api_exception(exc)
    if isinstance(exc, _transport_error_types()):
        where, what = _place(cluster, server)
        tls = _tls_failure(_chain(exc))
        if tls is not None:
            cause, hint = tls
            return ClusterNotTrusted(f"{where}TLS verification of {what} failed: {cause}; "
                                     f"{hint}", cluster=cluster, server=shown_server(server),
                                     cause=cause)
        cause = transport_cause(exc)
        return ClusterUnreachable(f"{where}cannot reach {what}: {cause}", cluster=cluster,
                                  server=shown_server(server), cause=cause)
    return None
