"""One ``coordination.k8s.io/v1`` Lease per Plan: which replica acts on it.

A replica acts on a Plan only while it holds the Plan's Lease (``smrun-<plan uid>`` in the Plan's
namespace). It takes a Lease that does not exist (create: of two replicas, one gets 409) or whose
holder has not renewed it for ``leaseDurationSeconds`` (an update carrying the resourceVersion it
read: of two replicas, one gets 409), and renews its own every third of the duration. A replica
killed with ``kill -9`` stops renewing; another takes over once the Lease has expired and resumes
the run from the journal. The clocks of the replicas are assumed to agree to well within the
duration (as Kubernetes' own leader election assumes).

The holder gives up *before* anyone else may take over, as client-go's leader election does
(renew deadline < lease duration): it counts the Lease as lost, and tells ``on_lost``, as soon
as a renewal finds another holder, or when no renewal has succeeded for ``renew_deadline``
seconds (default two thirds of the duration) since the last one was sent, whether the requests
fail or hang (a watchdog thread looks every quarter second, apart from the renewing one). The
deadline is measured on this replica's monotonic clock from the moment the last successful
renewal was *sent*, and the renewal writes a ``renewTime`` taken before sending, so the holder
stops at least ``duration - renew_deadline`` seconds before the Lease expires for the others.

It only decides who holds the Lease; what the holder does is :mod:`statemachine.operator.worker`'s.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
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
                 duration: int = 15, renew_deadline: float | None = None) -> None:
        self.api = api
        self.ref = ObjectRef(API_VERSION, "Lease", namespace, f"smrun-{plan_uid}")
        self.identity = identity
        self.duration = duration
        self.renew_deadline = renew_deadline if renew_deadline is not None else duration * 2 / 3
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lost = threading.Event()
        #: Told once, from a lease thread, with the reason, when the Lease is lost.
        self.on_lost: Callable[[str], None] | None = None
        self._lost_lock = threading.Lock()
        self._renewed_at = float("-inf")  # monotonic: when the last successful renewal was sent

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
        return self._try() == "held"

    def _try(self) -> str:
        """``held``, ``other`` (another live replica holds it or won the race) or ``error``."""
        sent = time.monotonic()
        try:
            lease = self.api.fetch(self.ref)
            if lease is None:
                self.api.create({"apiVersion": API_VERSION, "kind": "Lease",
                                 "metadata": {"name": self.ref.name,
                                              "namespace": self.ref.namespace,
                                              "labels": {"app.kubernetes.io/name": "smrun"}},
                                 "spec": self._spec(0)})
                self._renewed_at = sent
                return "held"
            spec = lease.get("spec") or {}
            mine = spec.get("holderIdentity") == self.identity
            if not mine and not self._expired(spec):
                return "other"
            transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
            acquired = _parse(spec.get("acquireTime")) if mine else None
            # The resourceVersion read makes the update conditional: a replica that took the
            # Lease meanwhile makes this one fail with 409.
            self.api.patch(self.ref, {"metadata": {"resourceVersion":
                                                   lease["metadata"]["resourceVersion"]},
                                      "spec": self._spec(transitions, acquired)})
            self._renewed_at = sent
            return "held"
        except Conflict:
            return "other"
        except ClusterError as exc:
            logger.warning("%s: lease not acquired: %s", self.ref, exc)
            return "error"

    def keep(self) -> None:
        """Renew every third of the duration (a failed renewal is tried again each second) on a
        thread until :meth:`release`; a watchdog thread declares the Lease lost at the renew
        deadline (see the module docstring)."""
        def renew() -> None:
            period = self.duration / 3
            while not self._stop.wait(period):
                if self.lost.is_set():
                    return
                outcome = self._try()
                if outcome == "other":
                    self._lose("another replica holds it")
                    return
                period = self.duration / 3 if outcome == "held" else min(1.0, self.duration / 3)

        def watchdog() -> None:
            while not self._stop.wait(0.25):
                late = time.monotonic() - self._renewed_at
                if late > self.renew_deadline:
                    self._lose(f"not renewed for {late:.1f}s, over the renew deadline of "
                               f"{self.renew_deadline:g}s")
                    return

        for target, kind in ((renew, "lease"), (watchdog, "lease-watchdog")):
            thread = threading.Thread(target=target, name=f"smrun-{kind}-{self.ref.name}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def _lose(self, reason: str) -> None:
        with self._lost_lock:
            if self.lost.is_set():
                return
            self.lost.set()
        logger.error("%s: lease lost (%s): this replica stops acting on the Plan", self.ref,
                     reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def release(self) -> None:
        """Stop renewing and delete the Lease if it is still ours (the Plan is finished)."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        if self.lost.is_set():
            return  # not ours to delete (another holder), or not provably ours any more
        try:
            lease = self.api.fetch(self.ref)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                self.api.delete(self.ref)
        except ClusterError as exc:
            logger.info("%s: lease not released: %s", self.ref, exc)
