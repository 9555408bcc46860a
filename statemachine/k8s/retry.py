"""Bounded retries of transient cluster errors: exponential backoff with full jitter.

:func:`call` runs a request function; when it raises a ``TransientClusterError`` (429, 5xx, dropped
or refused connections) it waits and tries again, at most ``RetryPolicy.attempts`` times and never
beyond ``RetryPolicy.total`` seconds from the first attempt. A server's Retry-After is honoured: the
wait is at least that long. Every retry is logged at WARNING on the ``statemachine.k8s`` logger
with the verb, the object, the status and the attempt number, which is how retries show in a run's log.
A caller whose retries of some errors are one condition an admin should read about once (a
cluster that does not answer while smrun connects to it) passes a ``note``: for those errors the
note is the one WARNING, logged before the first of their retries, and their per-attempt lines go
to DEBUG (``--debug`` shows them); other errors' retries are logged as above.

It does not translate errors (``errormap.py``) and does not decide what a retried create means
(``client.py`` resolves a 409 after a retried create). Clock, sleep and randomness are injectable
so tests run in microseconds.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from statemachine.errors import ClusterError

logger = logging.getLogger("statemachine.k8s")

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry one request."""

    attempts: int = 8
    """Total tries including the first; 1 disables retrying."""
    base: float = 0.05
    """Backoff before the second try is uniform in [0, base] seconds; doubles per try."""
    cap: float = 4.0
    """Upper bound of one backoff window, in seconds."""
    total: float = 60.0
    """No retry is started if it would end more than this many seconds after the first try."""

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0 or self.total < 0:
            raise ValueError(f"invalid retry policy {self!r}")

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full-jitter wait after failed try number ``attempt`` (1-based)."""
        window = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return rand() * window


NO_RETRY = RetryPolicy(attempts=1)


def call(fn: Callable[[], T], *, policy: RetryPolicy, verb: str, what: str,
         note: Callable[[ClusterError], str | None] | None = None,
         retry_if: Callable[[ClusterError], bool] | None = None,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic,
         rand: Callable[[], float] = random.random) -> T:
    """``fn()``, retried on transient cluster errors per ``policy``; the last error is raised.

    ``verb`` and ``what`` (e.g. ``"create"``, ``"VirtualMachine ns/vm-1"``) only label the log lines.
    ``note(error)``: a line for the retries of ``error``, or ``None`` (the default line at WARNING):
    the first such line is logged at WARNING, and the retries it stands for each at DEBUG (with
    the error). ``retry_if(error)``: retry only the transient errors it accepts (default: every
    transient error).
    """
    start = clock()
    attempt = 1
    noted = False
    while True:
        try:
            return fn()
        except ClusterError as exc:
            if not exc.transient or attempt >= policy.attempts \
                    or (retry_if is not None and not retry_if(exc)):
                raise
            delay = policy.backoff(attempt, rand)
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            if clock() + delay - start > policy.total:
                raise
            line = "retrying %s %s after %s (status %s, attempt %d/%d, waiting %.2fs)"
            fields = (verb, what, type(exc).__name__, exc.status if exc.status else "none",
                      attempt, policy.attempts, delay)
            text = note(exc) if note is not None else None
            if text is None:
                logger.warning(line, *fields)
            else:
                if not noted:
                    logger.warning("%s", text)
                    noted = True
                logger.debug(line + ": %s", *fields, exc)
            sleep(delay)
            attempt += 1
