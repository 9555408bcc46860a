"""What only the cluster's journal has (beside the conformance suite): objects under the 1 MiB
limit, one request per flush, refusing a change made between its read and its write, fencing a
writer that was taken over from, and the Plan's ownership (garbage-collected with it)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from statemachine.clusterjournal import SEALED, WRITER, ClusterJournalBackend
from statemachine.errors import StateDirError
from statemachine.k8s import ObjectRef
from statemachine.sim.cluster import SimulatedClusters
from tests.journal_conformance.stores import ClusterStore

MIB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path, make_sim: Callable[..., SimulatedClusters]) -> Iterator[ClusterStore]:
    cluster = ClusterStore(make_sim(controllers=False), tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def data_size(obj: dict[str, object]) -> int:
    data = obj.get("data") or {}
    assert isinstance(data, dict)
    return sum(len(k.encode()) + len(str(v).encode()) for k, v in data.items())


def test_objects_stay_under_the_size_limit(store: ClusterStore) -> None:
    journal = store.journal()
    journal.lock()
    blob = "x" * 40_000
    written = []
    for batch in range(8):  # ~2.5 MiB in 8 flushes of 8 entries, one flush over an object
        for i in range(8 if batch != 5 else 30):
            written.append(journal.append("outputs", vm="shop/web-1", values={"blob": blob,
                                                                             "i": i}))
        journal.flush()
    objects = sorted(store.objects(), key=lambda o: int(o["metadata"]["name"].rsplit("-", 1)[1]))
    assert len(objects) >= 3
    assert all(data_size(o) <= MIB for o in objects), [data_size(o) for o in objects]
    assert all(o["metadata"]["annotations"].get(SEALED) == "true" for o in objects[:-1])
    assert SEALED not in objects[-1]["metadata"]["annotations"]
    assert list(journal.backend.entries()) == written
    journal.close()
    # a new writer continues after the last object
    after = store.journal()
    after.lock()
    more = after.append("state_entered", vm="shop/web-1", state="Next")
    after.close()
    assert list(store.journal().backend.entries()) == written + [more]


def test_an_entry_larger_than_an_object_is_refused(store: ClusterStore) -> None:
    journal = store.journal(chunk_bytes=10_000)
    journal.lock()
    journal.append("outputs", vm="shop/web-1", values={"blob": "x" * 20_000})
    with pytest.raises(StateDirError, match="larger than a journal object holds"):
        journal.flush()


def test_one_request_per_flush(store: ClusterStore) -> None:
    journal = store.journal()
    journal.lock()
    before = store.api.stats()
    for i in range(200):
        journal.append("state_entered", vm=f"shop/vm-{i}", state="Started")
    journal.flush()
    journal.sync()  # nothing new: no request
    after = store.api.stats()
    assert after.get("patch", 0) - before.get("patch", 0) == 1
    assert sum(after.values()) - sum(before.values()) == 1
    journal.close()


def test_a_change_between_read_and_write_is_refused_not_overwritten(store: ClusterStore) -> None:
    journal = store.journal()
    journal.lock()
    first = journal.append("run_started", run="r", vms=[])
    journal.flush()
    # someone edits the object (kubectl label) between this writer's last write and its next
    ref = ObjectRef("v1", "ConfigMap", store.namespace, f"{store.plan}-0")
    store.api.patch(ref, {"metadata": {"labels": {"team": "storage"}}})
    journal.append("state_entered", vm="shop/web-1", state="Started")
    with pytest.raises(StateDirError, match="changed by someone else"):
        journal.flush()
    journal.close()
    obj = store.api.fetch(ref)
    assert obj is not None and obj["metadata"]["labels"]["team"] == "storage"
    assert list(store.journal().backend.entries()) == [first]


def test_taking_over_fences_the_writer_before(store: ClusterStore) -> None:
    """The operator's successor takes the journal (it holds the Plan's Lease): every later
    write of the writer before it is refused, also one that would start a new object."""
    old = store.journal(chunk_bytes=4096)
    old.lock()
    kept = old.append("run_started", run="r", vms=[])
    old.flush()
    new = store.journal(successor=True, chunk_bytes=4096)
    new.lock()
    holder = store.objects()[-1]["metadata"]["annotations"][WRITER]
    assert isinstance(new.backend, ClusterJournalBackend) and holder == new.backend.writer
    old.append("outputs", vm="shop/web-1", values={"blob": "x" * 3000})  # a new object
    old.append("outputs", vm="shop/web-1", values={"blob": "y" * 3000})
    with pytest.raises(StateDirError, match="another writer took it over"):
        old.flush()
    ours = new.append("state_entered", vm="shop/web-1", state="Started")
    new.close()
    old.close()
    assert list(store.journal().backend.entries()) == [kept, ours]


def test_objects_are_the_plans_and_go_with_it(store: ClusterStore) -> None:
    journal = store.journal(chunk_bytes=2048)
    journal.lock()
    for i in range(10):
        journal.append("outputs", vm="shop/web-1", values={"blob": "x" * 500, "i": i})
        journal.flush()
    journal.close()
    objects = store.objects()
    assert len(objects) > 1
    for obj in objects:
        meta = obj["metadata"]
        assert meta["ownerReferences"] == [store.owner]
        assert meta["labels"]["app.kubernetes.io/name"] == "smrun"
        assert meta["labels"]["smrun.io/plan"] == "conformance"
    newest = max(objects, key=lambda o: int(o["metadata"]["name"].rsplit("-", 1)[1]))
    assert WRITER not in (newest["metadata"].get("annotations") or {})  # released by close
    store.api.delete(ObjectRef("v1", "ConfigMap", store.namespace, "the-plan"))
    deadline = time.monotonic() + 20
    while store.objects() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.objects() == []


def test_a_flush_that_does_not_wait_is_sent_soon_and_fails_loudly(store: ClusterStore) -> None:
    """The engine's flush after a batch (wait=False) is sent from the backend's own thread; a
    refusal there is raised by the journal's next call, so the engine still stops."""
    journal = store.journal()
    journal.lock()
    first = journal.append("run_started", run="r", vms=[])
    journal.flush(wait=False)
    deadline = time.monotonic() + 10
    while list(store.journal().backend.entries()) != [first] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert list(store.journal().backend.entries()) == [first]
    ref = ObjectRef("v1", "ConfigMap", store.namespace, f"{store.plan}-0")
    store.api.patch(ref, {"metadata": {"labels": {"team": "storage"}}})
    journal.append("state_entered", vm="shop/web-1", state="Started")
    journal.flush(wait=False)
    with pytest.raises(StateDirError, match="changed by someone else"):
        while time.monotonic() < deadline:
            journal.flush(wait=False)
            time.sleep(0.02)
    assert journal.failed is not None
    journal.close()
    assert list(store.journal().backend.entries()) == [first]
