"""Delegating wrappers that count a Plan's journal writes for the operator's metrics.

:class:`CountingBackend` wraps the journal's backend and reports the entries appended (the
lines handed to ``write``); :class:`CountingCluster` wraps the cluster the cluster journal
writes through and reports each write request that stores it (a merge patch per flush, a create
per new ConfigMap, a delete when it is reset). Both only count and pass everything through
unchanged: the journal (``statemachine/engine/journal.py``) and its cluster backend do not know
they are counted. The callbacks must be cheap; the operator's go to a
:class:`~statemachine.operator.tally.Tally`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from statemachine.engine.journalbackend import BackendWrapper
from statemachine.k8s import Cluster, Obj, ObjectRef, PatchType

if TYPE_CHECKING:
    from statemachine.engine.journalbackend import JournalBackend

#: ``count(kind, n)``: kind ``entries`` (n lines appended) or a write verb (``create``,
#: ``patch``, ``delete``; n = 1).
JournalCounter = Callable[[str, int], None]


class CountingBackend(BackendWrapper):
    """``backend`` with the entries written to it counted."""

    def __init__(self, backend: JournalBackend, count: JournalCounter) -> None:
        super().__init__(backend)
        self._count = count

    def write(self, data: bytes, *, flush: bool = False) -> None:
        self._backend.write(data, flush=flush)
        self._count("entries", data.count(b"\n"))



class CountingCluster:
    """``cluster`` with its write requests counted (reads, watches and the rest as they are)."""

    def __init__(self, cluster: Cluster, count: JournalCounter) -> None:
        self._cluster = cluster
        self._count = count
        self.name = cluster.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)

    def create(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        created = self._cluster.create(manifest, dry_run=dry_run)
        if not dry_run:
            self._count("create", 1)
        return created

    def patch(self, ref: ObjectRef, patch: Any, *, patch_type: PatchType = "merge",
              subresource: str = "", dry_run: bool = False) -> Obj:
        patched = self._cluster.patch(ref, patch, patch_type=patch_type, subresource=subresource,
                                      dry_run=dry_run)
        if not dry_run:
            self._count("patch", 1)
        return patched

    def delete(self, ref: ObjectRef) -> bool:
        gone = self._cluster.delete(ref)
        self._count("delete", 1)
        return gone
