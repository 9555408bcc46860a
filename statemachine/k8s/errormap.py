"""Translate failures of the ``kubernetes`` client into smrun's error tree, in one place.

The ``kubernetes`` library raises ``ApiException`` (and ``kubernetes.dynamic``'s ``DynamicApiError``
subclasses of it) for HTTP error answers, and lets ``urllib3`` / socket errors through for transport
failures. :func:`translate` turns each into a :class:`statemachine.errors.ClusterError` subclass, chosen
by HTTP status so callers decide on retrying from the *type* (``transient``), never from a string.

Decisions:

- The message is the API server's Status ``message`` only, truncated to :data:`MAX_MESSAGE`. Never
  the response body, headers or the request: a Secret manifest can end up in an error, and
  ``DynamicApiError.__str__`` prints all of them.
- This module does not import ``kubernetes`` (only ``client.py`` does): API errors are recognised by
  shape (an ``int`` ``status`` plus ``body``/``headers`` attributes), transport errors by the standard
  library and ``urllib3`` base classes. That also keeps the mapping testable without a server.
- It does not retry or log; see ``retry.py``.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import time
from collections.abc import Mapping
from typing import Any

from statemachine.errors import (
    ClusterError,
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
    types: list[type[BaseException]] = [ConnectionError, TimeoutError, http.client.HTTPException]
    import urllib3.exceptions  # a dependency of kubernetes; cheap to import, unlike kubernetes

    types.append(urllib3.exceptions.HTTPError)
    return tuple(types)


def _describe_transport(exc: BaseException) -> str:
    # urllib3's MaxRetryError wraps the interesting cause in .reason (e.g. NewConnectionError).
    cause = getattr(exc, "reason", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc)
    # "HTTPConnection(host=..., port=...): Failed to establish a new connection: [Errno 111] ..."
    if ": " in text and text.startswith("<"):
        text = text.split(": ", 1)[1]
    return _truncate(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def translate(exc: BaseException, *, cluster: str = "") -> ClusterError | None:
    """The smrun error for a client failure, or ``None`` if ``exc`` is not a cluster failure.

    ``ClusterError`` passes through unchanged. Callers raise the result ``from exc``.
    """
    if isinstance(exc, ClusterError):
        return exc
    if _is_api_exception(exc):
        return _from_api_exception(exc)
    if isinstance(exc, _transport_error_types()):
        where = f"cluster {cluster}: " if cluster else ""
        return ClusterUnreachable(f"{where}cannot reach the API server ({_describe_transport(exc)})")
    return None
