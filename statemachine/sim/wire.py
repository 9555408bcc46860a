"""Request bodies on the HTTP/1.1 wire of the simulated API server.

Reads a request's body as kube-apiserver's Go ``net/http`` layer delivers it to the handlers:
``Content-Length`` or ``Transfer-Encoding: chunked`` (de-chunked, trailers skipped), and never more
than ``MAX_BODY + 1`` bytes kept in memory (upstream's ``limitedReadBody`` reads through a limiter
of limit+1; a longer body is answered 413 by the handler that needs it, see
:func:`too_large`). What is left of an over-long body is discarded up to ``DISCARD_LIMIT`` bytes,
as Go does after a handler returns; past that the connection is closed, so the next request on
a keep-alive connection never starts in the middle of an unread body.

Framing errors that Go answers before any Kubernetes code runs (a bad ``Content-Length``, an
unknown transfer coding, a broken chunk) raise :class:`FramingError` carrying Go's plain-text
answer; the connection is always closed after it.

It does not decode bodies (``decode.py``) nor authenticate anything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from io import BufferedIOBase

from statemachine.errors import PermanentClusterError

#: kube-apiserver's ``--max-request-body-bytes`` default (3 MiB).
MAX_BODY = 3 * 1024 * 1024
#: Go's net/http discards at most this much of a body its handler did not read, then closes.
DISCARD_LIMIT = 256 * 1024
_LINE_LIMIT = 4096  # a chunk-size line or a trailer line; Go's own limit is of the same order
_HEX = re.compile(rb"[0-9a-fA-F]{1,16}")


class FramingError(Exception):
    """A request whose framing Go's net/http refuses, with Go's plain-text answer."""

    def __init__(self, code: int, text: str, body: str | None = None) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.body = body if body is not None else f"{code} {text}"


@dataclass
class Body:
    """A request body as read: ``data`` (at most ``MAX_BODY + 1`` bytes), whether it was longer
    than ``MAX_BODY``, and whether the connection must close after the answer (the rest of the
    body could not be discarded cheaply)."""

    data: bytes = b""
    too_large: bool = False
    close: bool = False


def too_large() -> PermanentClusterError:
    """The 413 kube-apiserver answers for a body over the limit."""
    return PermanentClusterError(f"Request entity too large: limit is {MAX_BODY}", status=413,
                                 reason="RequestEntityTooLarge")


def _content_length(headers: Message) -> int | None:
    values = headers.get_all("Content-Length") or []
    if not values:
        return None
    # Go accepts repeated identical values and refuses anything else (RFC 9110 §8.6).
    distinct = {v.strip() for v in values}
    if len(distinct) != 1:
        raise FramingError(400, "Bad Request")
    value = distinct.pop()
    if not value.isdigit() or not value.isascii():
        raise FramingError(400, "Bad Request")
    return int(value)


def _is_chunked(headers: Message) -> bool:
    values = headers.get_all("Transfer-Encoding") or []
    if not values:
        return False
    codings = [c.strip().lower() for v in values for c in v.split(",") if c.strip()]
    if codings != ["chunked"]:
        # Go: 501 with a fixed text that never echoes the coding back.
        raise FramingError(501, "Not Implemented", "Unsupported transfer encoding")
    return True


def read_body(rfile: BufferedIOBase, headers: Message) -> Body:
    """Read the body of the request whose ``headers`` were just parsed from ``rfile``."""
    if _is_chunked(headers):  # a Content-Length next to chunked is ignored (RFC 9112 §6.3)
        return _read_chunked(rfile)
    length = _content_length(headers)
    if not length:
        return Body()
    if length <= MAX_BODY:
        data = rfile.read(length)
        if len(data) < length:
            raise FramingError(400, "Bad Request")  # the client closed mid-body
        return Body(data)
    # Over the limit: keep limit+1 bytes, then discard a little more or give up the connection.
    data = rfile.read(MAX_BODY + 1)
    rest = length - len(data)
    if rest <= DISCARD_LIMIT:
        rfile.read(rest)
        return Body(data, too_large=True)
    return Body(data, too_large=True, close=True)


def _chunk_size(rfile: BufferedIOBase) -> int:
    line = rfile.readline(_LINE_LIMIT + 1)
    if not line.endswith(b"\n") or len(line) > _LINE_LIMIT:
        raise FramingError(400, "Bad Request")
    size = line.split(b";", 1)[0].strip()  # chunk extensions are ignored, as Go does
    if not _HEX.fullmatch(size):
        raise FramingError(400, "Bad Request")
    return int(size, 16)


def _read_chunked(rfile: BufferedIOBase) -> Body:
    parts: list[bytes] = []
    kept = total = 0
    while True:
        size = _chunk_size(rfile)
        if size == 0:
            break
        total += size
        if total > MAX_BODY + 1 + DISCARD_LIMIT:
            # Too much to discard: stop reading; the connection closes after the 413.
            return Body(b"".join(parts), too_large=True, close=True)
        chunk = rfile.read(size)
        if len(chunk) < size or rfile.read(2) != b"\r\n":
            raise FramingError(400, "Bad Request")
        if kept <= MAX_BODY:
            piece = chunk[:MAX_BODY + 1 - kept]
            parts.append(piece)
            kept += len(piece)
    while True:  # trailers, up to the empty line
        line = rfile.readline(_LINE_LIMIT + 1)
        if not line.endswith(b"\n"):
            raise FramingError(400, "Bad Request")
        if line in (b"\r\n", b"\n"):
            break
    data = b"".join(parts)
    return Body(data, too_large=len(data) > MAX_BODY)
