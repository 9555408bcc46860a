"""The engine on the cluster's journal: stopped at every boundary of the kill -9 crash test
(``tests/engine/test_e2e.py``), then resumed by a new writer that takes the journal over (as the
operator's next replica does), it completes without creating anything twice.

In-process: the "kill" fences the journal right after the chosen event (what was flushed
stays, nothing more is written, no create not yet sent is sent), which stops the engine where
it is, as a dead process would; the next engine is built afresh on a new backend.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.clusterjournal import ClusterJournalBackend
from statemachine.clusters import connect_plan
from statemachine.engine import Engine, EngineSettings, Journal
from statemachine.errors import StateDirError
from statemachine.itinerary import load_itinerary
from statemachine.k8s.client import KubeCluster, connect
from statemachine.plan import load_plan
from statemachine.sim.cluster import SimulatedClusters
from tests.engine.test_e2e import DATA, KILL_POINTS, Creations, write_plan


@pytest.fixture
def simc(tmp_path: Path) -> Iterator[SimulatedClusters]:
    with SimulatedClusters(seed=DATA / "seed.yaml", tick=0.02,
                           kubeconfig_out=tmp_path / "kubeconfig") as sim:
        yield sim


def run_engine(plan_path: Path, api: KubeCluster, tmp: Path, who: str,
               crash_at: tuple[str, str, int] | None = None) -> dict[str, str] | None:
    """One engine over the plan with its journal in the cluster; None if it was "killed"."""
    plan = load_plan(plan_path)
    itinerary = load_itinerary(plan.itinerary)
    journal = Journal(tmp / who, backend=ClusterJournalBackend(
        api, namespace="default", name=f"smrun-journal-{plan.name}", identity=who,
        take_over=True))
    journal.lock()
    seen = 0

    def crash(e: dict[str, Any]) -> None:
        nonlocal seen
        if crash_at is not None and (e["event"], e.get("state")) == crash_at[:2]:
            seen += 1
            if seen == crash_at[2]:
                journal.flush()
                journal.fence(StateDirError("killed"))

    try:
        with connect_plan(plan, cache_dir=tmp / f"cache-{who}") as conn:
            engine = Engine(plan, itinerary, source=conn.source, target=conn.target,
                            journal=journal, settings=EngineSettings(resync=0.3),
                            on_event=crash)
            try:
                result = engine.run()
            except StateDirError:
                assert crash_at is not None
                return None
            return {v.vm: v.phase for v in result.vms}
    finally:
        journal.close()


@pytest.mark.slow
def test_stopped_at_every_boundary_then_resumed_completes_without_duplicates(
        simc: SimulatedClusters, tmp_path: Path) -> None:
    created = Creations(simc)
    api = connect(name="journal", kubeconfig=simc.kubeconfig_path, context="target",
                  cache_dir=tmp_path / "cache")
    try:
        for i, (event, state_name) in enumerate(KILL_POINTS):
            plan = write_plan(tmp_path, simc, [f"k{i}-a", f"k{i}-b", f"bad-k{i}"],
                              name=f"kill{i}")
            nth = 1 if event == "undo" else 2
            assert run_engine(plan, api, tmp_path, f"first-{i}", (event, state_name, nth)) is None
            phases = run_engine(plan, api, tmp_path, f"second-{i}")
            assert phases == {f"shop/k{i}-a": "Completed", f"shop/k{i}-b": "Completed",
                              f"shop/bad-k{i}": "Failed"}, (event, state_name)
            assert [n for n in created.left(f"kill{i}") if "bad" in n] == [], (event, state_name)
    finally:
        api.close()
    good = {k: n for k, n in created.added.items()
            if not k[1].startswith(("bad", "smrun-journal-"))}  # the journals: one each
    assert sum(1 for k in created.added if k[1].startswith("smrun-journal-")) == len(KILL_POINTS)
    assert len(good) == len(KILL_POINTS) * 2 * 3 and set(good.values()) == {1}, good
