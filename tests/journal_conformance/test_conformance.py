"""One conformance suite for both journal backends (issue 12 item 4): the file of ``smrun run``
and the cluster's ConfigMaps of the operator. Each case runs on both; the cluster one against
the simulated clusters over HTTPS.

Cases: append and read back; resume after reopening (a new writer continues the same journal,
same run id); a torn write (file: the process died mid-line; cluster: a write that landed but
whose answer was lost, so the client's retry got 409) is neither read half nor twice, and the
next writer continues; a write interleaved by another writer never overwrites it (the cluster
refuses to write after it; the file appends after it); a second writer is refused while the
first holds the journal.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statemachine.engine.journal import Journal
from statemachine.errors import LockHeld, StateDirError
from statemachine.sim.cluster import SimulatedClusters
from tests.journal_conformance.stores import OTHER, ClusterStore, FileStore

Store = FileStore | ClusterStore


@pytest.fixture(params=["file", "cluster"])
def store(request: pytest.FixtureRequest, tmp_path: Path,
          make_sim: Callable[..., SimulatedClusters]) -> Iterator[Store]:
    if request.param == "file":
        yield FileStore(tmp_path)
        return
    cluster = ClusterStore(make_sim(controllers=False), tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def entries(journal: Journal) -> list[dict[str, Any]]:
    return list(journal.backend.entries())


def write_some(journal: Journal, run: str = "run-1") -> list[dict[str, Any]]:
    ref = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "namespace": "shop",
           "name": "web-1"}
    out = [journal.append("run_started", run=run, vms=["shop/web-1"]),
           journal.append("vm_started", vm="shop/web-1", predicates={"HasPreHook": False},
                          reads={"vm": {"metadata": {"name": "web-1"}}}),
           journal.append("state_entered", vm="shop/web-1", state="CreateTargetVM"),
           journal.append("intent", vm="shop/web-1", state="CreateTargetVM", cluster="target",
                          ref=ref, action="apply", hash="abc"),
           journal.append("created", vm="shop/web-1", state="CreateTargetVM", cluster="target",
                          ref=ref, ours=True),
           journal.append("outputs", vm="shop/web-1", values={"url": "https://x:1"}),
           journal.append("state_completed", vm="shop/web-1", state="CreateTargetVM")]
    return out


def test_append_and_read_back(store: Store) -> None:
    journal = store.journal()
    journal.lock()
    journal.probe()
    written = write_some(journal)
    journal.flush()
    replay = journal.read()
    assert replay.run_id == "run-1"
    rec = replay.vms["shop/web-1"]
    assert (rec.state, rec.state_done, rec.outputs) == ("CreateTargetVM", True,
                                                        {"url": "https://x:1"})
    assert [(c.cluster, c.ref.name, c.confirmed) for c in rec.created] == [("target", "web-1", True)]
    assert rec.predicates == {"HasPreHook": False}
    # Another reader (a new process: `smrun status`, or the next replica) sees the same entries.
    assert entries(store.journal()) == written
    journal.close()


def test_resume_after_reopen(store: Store) -> None:
    first = store.journal()
    first.lock()
    written = write_some(first)
    first.close()
    second = store.journal()
    second.lock()
    replay = second.read()
    assert replay.run_id == "run-1"
    assert replay.vms["shop/web-1"].state == "CreateTargetVM"
    more = [second.append("run_started", run="run-1", vms=["shop/web-1"]),
            second.append("state_entered", vm="shop/web-1", state="WaitForTargetVM")]
    second.close()
    assert entries(store.journal()) == written + more
    assert store.journal().read().vms["shop/web-1"].state == "WaitForTargetVM"


def test_torn_write_is_read_neither_half_nor_twice(store: Store) -> None:
    first = store.journal()
    first.lock()
    written = write_some(first)
    first.flush()
    store.tear(first)
    after = store.journal(successor=True)
    after.lock()
    seen = entries(after)
    assert seen[:len(written)] == written
    torn = seen[len(written):]
    # The file's half line is not an entry; the cluster's lost-answer write is there once.
    assert [e["state"] for e in torn] in ([], ["Torn"])
    assert [e["state"] for e in torn] == ([] if store.name == "file" else ["Torn"])
    more = after.append("state_entered", vm="shop/web-1", state="WaitForTargetVM")
    after.close()
    assert entries(store.journal()) == written + torn + [more]


def test_interleaved_writer_is_never_overwritten(store: Store) -> None:
    journal = store.journal()
    journal.lock()
    written = write_some(journal)
    journal.flush()
    store.interfere()  # someone else writes between this writer's last write and its next
    late = journal.append("state_entered", vm="shop/web-1", state="WaitForTargetVM")
    if store.refuses_interleaved:
        with pytest.raises(StateDirError, match="changed by writer-.*nothing was overwritten"):
            journal.flush()
        assert journal.failed is not None
        with pytest.raises(StateDirError):
            journal.append("state_entered", vm="shop/web-1", state="Again")
        assert entries(store.journal()) == written + [OTHER]
    else:
        journal.flush()
        assert entries(store.journal()) == written + [OTHER, late]
    journal.close()


def test_second_writer_is_refused(store: Store) -> None:
    first = store.journal()
    first.lock()
    written = write_some(first)
    first.flush()
    second = store.journal()
    with pytest.raises(LockHeld, match="already running"):
        second.lock()
    first.close()
    # Once the first has finished, the next may write.
    second.lock()
    more = second.append("state_entered", vm="shop/web-1", state="WaitForTargetVM")
    second.close()
    assert entries(store.journal()) == written + [more]
