"""Counters for hot paths: counting takes no lock, reading adds up what every thread counted.

The operator counts every API request (``statemachine.k8s.client`` calls its observer on the
requesting thread: the engine's I/O pool, the watch threads, the status writer...) and every
journal entry. A Prometheus ``Counter`` takes a lock for ``labels()`` and another for ``inc()``
on each of those. A :class:`Tally` instead gives each thread a dict of its own (its *shard*),
which only that thread writes; a scrape copies every shard (a dict copy runs without giving up
the GIL, so it never sees one half-updated) and adds them up. The one lock is taken when a
thread counts for the first time and when a scrape lists the shards.

It knows nothing about Prometheus; :mod:`statemachine.operator.metrics` turns totals into
metric families.
"""
from __future__ import annotations

import threading
from collections.abc import Hashable

__all__ = ["Tally"]


class Tally:
    """Counts per key (see the module docstring)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._shards: list[dict[Hashable, int]] = []
        self._lock = threading.Lock()

    def add(self, key: Hashable, n: int = 1) -> None:
        try:
            shard: dict[Hashable, int] = self._local.shard
        except AttributeError:
            shard = self._local.shard = {}
            with self._lock:
                # Kept after its thread ends: what it counted stays counted.
                self._shards.append(shard)
        shard[key] = shard.get(key, 0) + n

    def totals(self) -> dict[Hashable, int]:
        with self._lock:
            shards = list(self._shards)
        out: dict[Hashable, int] = {}
        for shard in shards:
            for key, n in shard.copy().items():
                out[key] = out.get(key, 0) + n
        return out
