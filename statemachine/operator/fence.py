"""A :class:`~statemachine.k8s.Cluster` that stops writing once its fence is up.

The operator hands the engine, the status reporter and the cluster journal their clusters
through a :class:`FencedCluster`. When the replica can no longer prove it holds the Plan's Lease
(:mod:`statemachine.operator.lease`), the worker raises the fence: from then on every create,
patch and delete through it fails at once (a ``PermanentClusterError``), without a request, so a write
that was queued behind the loss (on the engine's I/O pool, in the reporter's thread) never
reaches a cluster. Reads still work. A request already on the wire when the fence goes up
cannot be called back; the Lease's renew deadline, shorter than its duration, leaves it the
time to land before another replica may act.

It decides nothing: the worker raises the fence.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from statemachine.errors import PermanentClusterError
from statemachine.k8s import Cluster, Obj, ObjectRef, PatchType


class FencedCluster:
    """``cluster`` with its writes refused once ``fence`` is set (see the module docstring)."""

    def __init__(self, cluster: Cluster, fence: threading.Event, why: str) -> None:
        self._cluster = cluster
        self._fence = fence
        self._why = why
        self.name = cluster.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cluster, name)  # reads, watches, discovery: as they are

    def _check(self, verb: str, what: object) -> None:
        if self._fence.is_set():
            raise PermanentClusterError(f"{verb} {what}: not sent: {self._why}")

    def create(self, manifest: Mapping[str, Any], *, dry_run: bool = False) -> Obj:
        self._check("create", ObjectRef.of(manifest))
        return self._cluster.create(manifest, dry_run=dry_run)

    def patch(self, ref: ObjectRef, patch: Any, *, patch_type: PatchType = "merge",
              subresource: str = "", dry_run: bool = False) -> Obj:
        self._check("patch", ref)
        return self._cluster.patch(ref, patch, patch_type=patch_type, subresource=subresource,
                                   dry_run=dry_run)

    def delete(self, ref: ObjectRef) -> bool:
        self._check("delete", ref)
        return self._cluster.delete(ref)
