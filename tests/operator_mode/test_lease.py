"""The Plan's Lease seen from its holder: it gives up before anyone else may take over
(renew deadline < lease duration, as client-go's leader election), whether another holder
appears or the API server stops answering. Against the simulated cluster over HTTPS."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from statemachine.k8s.client import connect
from statemachine.operator.lease import PlanLease
from statemachine.sim.cluster import SimulatedClusters


def _lease(sim: SimulatedClusters, tmp_path: Path, ident: str) -> PlanLease:
    api = connect(name=ident, kubeconfig=sim.kubeconfig_path, context="target",
                  cache_dir=tmp_path / f"cache-{ident}")
    return PlanLease(api, "default", "0000-plan", ident, duration=3)


def _watch(lease: PlanLease) -> list[tuple[float, str]]:
    lost: list[tuple[float, str]] = []
    done = threading.Event()

    def on_lost(reason: str) -> None:
        lost.append((time.monotonic(), reason))
        done.set()
    lease.on_lost = on_lost
    lease.keep()
    return lost


def test_holder_gives_up_at_the_renew_deadline_when_the_server_is_gone(
        make_sim: Callable[..., SimulatedClusters], tmp_path: Path) -> None:
    sim = make_sim(controllers=False)
    lease = _lease(sim, tmp_path, "replica-a")
    assert lease.acquire()
    lost = _watch(lease)
    time.sleep(1.5)  # one renewal went through
    sim.stop()
    deadline = time.monotonic() + 10
    while not lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lost, "the lease was never declared lost"
    at, reason = lost[0]
    assert "renew deadline" in reason
    renewed = lease._renewed_at  # when the last renewal that succeeded was sent
    # Given up after the renew deadline (2 s), and before the Lease expires for the others.
    assert lease.renew_deadline <= at - renewed < lease.duration, (at - renewed, reason)
    assert lease.lost.is_set()
    lease.release()


def test_holder_gives_up_when_another_holds_it(make_sim: Callable[..., SimulatedClusters],
                                              tmp_path: Path) -> None:
    sim = make_sim(controllers=False)
    a, b = _lease(sim, tmp_path, "replica-a"), _lease(sim, tmp_path, "replica-b")
    assert a.acquire()
    assert not b.acquire()  # a live holder
    lost = _watch(a)
    stale = (datetime.now(timezone.utc) - timedelta(seconds=10)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    # replica-b sees the Lease as expired (as after a partition longer than the lease time)
    for _ in range(10):  # replica-a may renew in between: then again
        b.api.patch(b.ref, {"spec": {"renewTime": stale}})
        if b.acquire():
            break
    assert b.holder() == "replica-b"
    deadline = time.monotonic() + 5
    while not lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lost and lost[0][1] == "another replica holds it"
    a.release()  # not its own any more: left to replica-b
    assert b.holder() == "replica-b"
    b.release()
    assert b.api.fetch(b.ref) is None
