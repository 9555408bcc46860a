"""The bounded event history of a simulated cluster: its watch cache and its etcd compaction.

Events are kept per kind, like kube-apiserver's watch cache (one per resource), the last
``limit`` of each kind. What fell out is compacted: a watch from a resourceVersion older than a
kind's window gets 410 ``too old resource version: N (M)``, and a list or continue token pinned to
such a version gets 410 too (``paging.py`` words that one). Within the window the history also
answers "what did this kind look like at resourceVersion N" (:meth:`History.rollback`), which is how
paginated lists stay consistent and ``resourceVersionMatch=Exact`` works.

The oldest servable version follows the watch cache's rule: while a kind has lost nothing, any
version is servable (the cache was filled by a list at start-up); afterwards it is the first
retained event's.

The caller (``store.Store``) holds its lock around every call; this class has no lock of its own.
"""
from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from statemachine.errors import Gone

if TYPE_CHECKING:
    from statemachine.sim.kinds import Kind
    from statemachine.sim.store import StoreEvent

Key = tuple[str, str]


def event_key(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


class _KindLog:
    __slots__ = ("events", "rvs", "start", "compacted")

    def __init__(self) -> None:
        self.events: list[StoreEvent] = []
        self.rvs: list[int] = []
        self.start = 0  # events[:start] are compacted (dropped lazily, in batches)
        self.compacted = False


class History:
    """Per-kind bounded event logs (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the watch history must keep at least one event, got {limit}")
        self.limit = limit
        self._logs: dict[Kind, _KindLog] = {}

    def _log(self, kind: Kind) -> _KindLog:
        log = self._logs.get(kind)
        if log is None:
            log = self._logs[kind] = _KindLog()
        return log

    def append(self, event: StoreEvent) -> None:
        log = self._log(event.kind)
        log.events.append(event)
        log.rvs.append(event.resource_version)
        if len(log.events) - log.start > self.limit:
            log.start += 1
            log.compacted = True
            if log.start >= self.limit:  # amortized: drop a window's worth at once
                del log.events[:log.start]
                del log.rvs[:log.start]
                log.start = 0

    def oldest(self, kind: Kind) -> int:
        """The oldest resourceVersion from which ``kind`` can still be watched or listed."""
        log = self._logs.get(kind)
        if log is None or not log.compacted:
            return 0
        return log.rvs[log.start] - 1

    def last_rv(self, kind: Kind) -> int:
        """The resourceVersion of the kind's newest event (0 if none)."""
        log = self._logs.get(kind)
        return log.rvs[-1] if log is not None and log.rvs else 0

    def since(self, kind: Kind, resource_version: int) -> list[StoreEvent]:
        """The kind's events after ``resource_version``; ``Gone`` (410 Expired) if compacted."""
        oldest = self.oldest(kind)
        if resource_version < oldest:
            raise Gone(f"too old resource version: {resource_version} ({oldest})", status=410,
                       reason="Expired")
        log = self._logs.get(kind)
        if log is None:
            return []
        index = bisect.bisect_right(log.rvs, resource_version, lo=log.start)
        return log.events[index:]

    def rollback(self, kind: Kind, table: dict[Key, Any],
                 resource_version: int) -> dict[Key, Any]:
        """``table`` (the kind's objects now) as it was at ``resource_version``; a new dict.
        Raises ``Gone`` if that version was compacted."""
        state = dict(table)
        for event in reversed(self.since(kind, resource_version)):
            key = event_key(event.obj)
            if event.old is None:
                state.pop(key, None)
            else:
                state[key] = event.old
        return state
