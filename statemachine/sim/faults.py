"""Random fault injection for the simulated API server (``--fault-rate R``).

A fraction ``R`` of non-watch API requests is answered with a fault instead of being served:
500 InternalError, 429 TooManyRequests with ``Retry-After``, or a dropped connection (the socket
is closed without an answer), each equally likely. Watches are never faulted (their failure
modes are covered by 410 and timeouts). A seeded ``random.Random`` keeps runs reproducible.
"""
from __future__ import annotations

import random
import threading
from typing import Literal

Fault = Literal["500", "429", "drop"]
FAULTS: tuple[Fault, ...] = ("500", "429", "drop")


class FaultInjector:
    """Decides per request whether to fail it, and how."""

    def __init__(self, rate: float, *, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {rate}")
        self.rate = rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def pick(self) -> Fault | None:
        """``None`` to serve the request normally, else the fault to answer with."""
        if self.rate <= 0.0:
            return None
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            return self._rng.choice(FAULTS)
