"""One ``coordination.k8s.io/v1`` Lease per Plan: which replica acts on it.

A replica acts on a Plan only while it holds the Plan's Lease (``smrun-<plan uid>`` in the Plan's
namespace). It takes a Lease that does not exist (create: of two replicas, one gets 409) or whose
holder has not renewed it for ``leaseDurationSeconds`` (an update carrying the resourceVersion it
read: of two replicas, one gets 409), and renews its own every third of the duration. A replica
killed with ``kill -9`` stops renewing; another takes over once the Lease has expired and resumes
the run from the journal. The clocks of the replicas are assumed to agree to well within the
duration (as Kubernetes' own leader election assumes).

It only decides who holds the Lease; what the holder does is :mod:`statemachine.operator.worker`'s.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from statemachine.errors import ClusterError, Conflict
from statemachine.k8s import Cluster, ObjectRef

logger = logging.getLogger("statemachine.operator")

API_VERSION = "coordination.k8s.io/v1"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class PlanLease:
    """The Lease of one Plan, seen from one replica (``identity``)."""

    def __init__(self, api: Cluster, namespace: str, plan_uid: str, identity: str, *,
                 duration: int = 15) -> None:
        self.api = api
        self.ref = ObjectRef(API_VERSION, "Lease", namespace, f"smrun-{plan_uid}")
        self.identity = identity
        self.duration = duration
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()

    def _spec(self, transitions: int, acquired: datetime | None = None) -> dict[str, Any]:
        now = _now()
        return {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                "acquireTime": _micro(acquired or now), "renewTime": _micro(now),
                "leaseTransitions": transitions}

    def holder(self) -> str:
        """Who holds it now ("" if nobody or expired)."""
        lease = self.api.fetch(self.ref)
        spec = (lease or {}).get("spec") or {}
        if self._expired(spec):
            return ""
        return str(spec.get("holderIdentity") or "")

    def _expired(self, spec: dict[str, Any]) -> bool:
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.duration)
        return not spec.get("holderIdentity") or renewed is None or \
            _now() > renewed + timedelta(seconds=duration)

    def acquire(self) -> bool:
        """Take or renew the Lease; False if another live replica holds it (or won the race)."""
        try:
            lease = self.api.fetch(self.ref)
            if lease is None:
                self.api.create({"apiVersion": API_VERSION, "kind": "Lease",
                                 "metadata": {"name": self.ref.name,
                                              "namespace": self.ref.namespace,
                                              "labels": {"app.kubernetes.io/name": "smrun"}},
                                 "spec": self._spec(0)})
                return True
            spec = lease.get("spec") or {}
            mine = spec.get("holderIdentity") == self.identity
            if not mine and not self._expired(spec):
                return False
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
            acquired = _parse(spec.get("acquireTime")) if mine else None
            # The resourceVersion read makes the update conditional: a replica that took the
            # Lease meanwhile makes this one fail with 409.
            self.api.patch(self.ref, {"metadata": {"resourceVersion":
                                                   lease["metadata"]["resourceVersion"]},
                                      "spec": self._spec(transitions, acquired)})
            return True
        except Conflict:
            return False
        except ClusterError as exc:
            logger.warning("%s: lease not acquired: %s", self.ref, exc)
            return False

    def keep(self) -> None:
        """Renew every third of the duration on a thread until :meth:`release`; sets ``lost``
        when a renewal finds another holder."""
        def loop() -> None:
            while not self._stop.wait(self.duration / 3):
                if not self.acquire():
                    logger.error("%s: lease lost to another replica", self.ref)
                    self.lost.set()
                    return
        self._thread = threading.Thread(target=loop, name=f"smrun-lease-{self.ref.name}",
                                        daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop renewing and delete the Lease if it is still ours (the Plan is finished)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            lease = self.api.fetch(self.ref)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                self.api.delete(self.ref)
        except ClusterError as exc:
            logger.info("%s: lease not released: %s", self.ref, exc)
