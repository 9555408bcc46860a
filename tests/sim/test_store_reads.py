"""The store's read paths: copies for callers that edit, the stored snapshot for those that only
read (``Store.peek``/``peek_list``), and the fast copy of stored snapshots (``copy_stored``).

The controllers read through ``peek`` where they only read; the last tests run whole
decentralized migrations and check what that relies on: no stored snapshot is ever changed in
place after it was committed, and every snapshot is a plain JSON value (what lets
``copy_stored`` copy with ``marshal`` instead of a JSON round trip).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.store import Store, StoreEvent, clone, copy_stored
from polling import wait_for
from test_controllers_live import NS, prepare, start_migration, status


def _store_with_config_maps() -> Store:
    store = Store()
    store.create("Namespace", {"metadata": {"name": "a"}})
    store.create("Namespace", {"metadata": {"name": "b"}})
    for ns, name in (("b", "x"), ("a", "y"), ("a", "x")):
        store.create("ConfigMap", {"metadata": {"name": name, "namespace": ns},
                                   "data": {"k": f"{ns}/{name}"}})
    return store


def test_peek_returns_the_stored_object_and_get_a_copy() -> None:
    store = _store_with_config_maps()
    peeked = store.peek("ConfigMap", "a", "x")
    assert peeked is not None and peeked is store.peek("ConfigMap", "a", "x")
    copy = store.get("ConfigMap", "a", "x")
    assert copy == peeked and copy is not peeked and copy["data"] is not peeked["data"]
    copy["data"]["k"] = "changed"
    assert store.peek("ConfigMap", "a", "x") == {**copy, "data": {"k": "a/x"}}
    assert store.peek("ConfigMap", "a", "missing") is None


def test_a_peeked_snapshot_stays_the_version_it_was() -> None:
    store = _store_with_config_maps()
    before = store.peek("ConfigMap", "a", "x")
    assert before is not None
    store.patch("ConfigMap", "a", "x", {"data": {"k": "new"}})
    after = store.peek("ConfigMap", "a", "x")
    assert after is not None and after is not before
    assert before["data"] == {"k": "a/x"} and after["data"] == {"k": "new"}
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])


@pytest.mark.parametrize("namespace", [None, "", "a", "b", "none"])
def test_peek_list_is_list_without_copies(namespace: str | None) -> None:
    store = _store_with_config_maps()
    peeked = store.peek_list("ConfigMap", namespace)
    assert peeked == store.list("ConfigMap", namespace)
    for obj in peeked:
        md = obj["metadata"]
        assert obj is store.peek("ConfigMap", md["namespace"], md["name"])
    assert [o["metadata"]["name"] for o in store.peek_list("Namespace")] == \
        [o["metadata"]["name"] for o in store.list("Namespace")]


class _Text(str):
    """A str subclass: ``marshal`` refuses it, so ``copy_stored`` takes the JSON round trip."""


def test_copy_stored_makes_the_copy_a_json_round_trip_makes() -> None:
    shared = {"deep": [1, 2.5, None, True, "é\u2603"]}
    value: dict[str, Any] = {"metadata": {"name": "n"}, "a": shared, "b": shared,
                             "big": 2**70, "neg": -0.0, "text": "x\ud800y"}
    for copy in (copy_stored(value), clone(value)):
        assert copy == value and json.dumps(copy) == json.dumps(value)
        assert copy["a"] is not shared and copy["a"] is not copy["b"]  # no shared sub-objects
        copy["a"]["deep"].append(0)
        assert shared["deep"] == [1, 2.5, None, True, "é\u2603"] and copy["b"] == shared
    odd = {"metadata": {"name": "n"}, "s": _Text("t")}
    assert copy_stored(odd) == clone(odd) == {"metadata": {"name": "n"}, "s": "t"}
    assert type(copy_stored(odd)["s"]) is str


def test_copy_stored_shares_managed_fields_entries_as_clone_does() -> None:
    store = _store_with_config_maps()
    stored = store.peek("ConfigMap", "a", "x")
    assert stored is not None and stored["metadata"]["managedFields"]
    copy = copy_stored(stored)
    assert copy == stored
    assert copy["metadata"]["managedFields"] is not stored["metadata"]["managedFields"]
    assert copy["metadata"]["managedFields"][0] is stored["metadata"]["managedFields"][0]
    listed = copy_stored([stored, stored])
    assert listed == [stored, stored] and listed[0] is not listed[1]


def _plain(value: Any, path: str = "") -> str | None:
    """Where ``value`` is not a plain JSON value (a tuple, a non-str key...), else ``None``."""
    if value is None or type(value) in (str, int, float, bool):
        return None
    if type(value) is list:
        return next((bad for i, v in enumerate(value) if (bad := _plain(v, f"{path}[{i}]"))),
                    None)
    if type(value) is dict:
        for key, v in value.items():
            if type(key) is not str:
                return f"{path}: key {key!r}"
            if bad := _plain(v, f"{path}.{key}"):
                return bad
        return None
    return f"{path}: {type(value).__name__}"


class _Recorder:
    """Every snapshot the stores commit, with a JSON copy taken at commit time."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, Any]] = []

    def callback(self, cluster: str) -> Callable[[StoreEvent], None]:
        def on_event(event: StoreEvent) -> None:
            md = event.obj["metadata"]
            what = f"{cluster} {event.kind.kind} {md.get('namespace', '')}/{md['name']} " \
                   f"rv {event.resource_version}"
            self.seen.append((what, event.obj, json.loads(json.dumps(event.obj))))
        return on_event

    def check(self) -> None:
        assert self.seen
        changed = [what for what, obj, at_commit in self.seen if obj != at_commit]
        assert changed == [], "stored snapshots changed in place after their commit"
        odd = [f"{what}: {bad}" for what, obj, _ in self.seen if (bad := _plain(obj))]
        assert odd == [], "stored snapshots that are not plain JSON values"


@pytest.mark.parametrize("fail_at", [None, "Scheduling"])
def test_migrations_never_change_a_stored_snapshot_in_place(
        make_sim: Callable[..., SimulatedClusters], fail_at: str | None) -> None:
    sim = make_sim(tick=0.02)
    recorder = _Recorder()
    for cluster in ("source", "target"):
        sim.store(cluster).subscribe(recorder.callback(cluster))
    s, t = prepare(sim, fail_at=fail_at)
    start_migration(s, t)
    end = "Failed" if fail_at else "Succeeded"
    wait_for(lambda: status(t, "VirtualMachineInstanceMigration", "web-target")
             .get("phase") == end, what=f"target VMIM {end}")

    def source_done() -> bool:  # a completed source VMIM goes when its VMI does
        vmim = s.try_get("VirtualMachineInstanceMigration", NS, "web-source")
        return vmim is None or (vmim.get("status") or {}).get("phase") == end
    wait_for(source_done, what=f"source VMIM {end} or gone")
    if not fail_at:
        wait_for(lambda: status(t, "VirtualMachine", "web")["printableStatus"] == "Running",
                 what="target VM Running")
    recorder.check()


def _mutations(store: Store) -> list[tuple[str, int, Any]]:
    """A controller's mutates on ``store`` (some change nothing, some only the status): the
    events they commit and every result, with what varies between two stores left out."""
    seen: list[tuple[str, int, Any]] = []
    store.subscribe(lambda e: seen.append(("event", e.resource_version,
                                           (e.type, e.kind.kind, e.obj["metadata"]["name"]))))
    store.create("Namespace", {"metadata": {"name": "a"}})
    store.create("VirtualMachine", {  # a kind with a status subresource
        "metadata": {"name": "v", "namespace": "a", "labels": {"x": "1"}},
        "spec": {"runStrategy": "Always"}, "status": {"phase": "Running"}}, keep_status=True)
    store.create("ConfigMap", {"metadata": {"name": "c", "namespace": "a"}, "data": {"k": "v"}})

    def status(o: Any) -> None:
        o["status"]["phase"] = "Succeeded"

    def label(o: Any) -> None:
        o["metadata"]["labels"]["y"] = "2"

    def both(o: Any) -> None:
        o["status"]["nodeName"] = "n1"
        o["metadata"]["labels"]["z"] = "3"

    def same_value(o: Any) -> None:
        o["status"]["phase"] = "Succeeded"

    steps: list[tuple[str, Callable[[Any], None]]] = [
        ("VirtualMachine", lambda o: None), ("VirtualMachine", status),
        ("VirtualMachine", same_value), ("VirtualMachine", label),
        ("VirtualMachine", both), ("ConfigMap", lambda o: None),
        ("ConfigMap", lambda o: o["data"].update(k="w")), ("ConfigMap", lambda o: o.update(
            data={"k": "w"}))]
    for kind, change in steps:
        name = "v" if kind == "VirtualMachine" else "c"
        result = store.mutate(kind, "a", name, change)
        assert result == store.get(kind, "a", name)
        assert result is not store.peek(kind, "a", name)
        seen.append(("result", store.resource_version, _comparable(result)))
    return seen


def _comparable(obj: Any) -> Any:
    out = json.loads(json.dumps(obj))
    md = out["metadata"]
    md.pop("uid"), md.pop("creationTimestamp")
    for entry in md.get("managedFields") or []:
        entry.pop("time", None)
    return out


def test_unadmitted_mutates_skip_no_op_writes_with_the_same_outcome() -> None:
    fast = Store()  # no admission hook: the controllers' path (no-op main writes skipped)
    full = Store()
    full.admission = lambda kind, new, old, sub: None  # a hook that may act: the whole path
    assert _mutations(fast) == _mutations(full)
    events = [e for e in _mutations(Store()) if e[0] == "event"]
    # status, label, both (a main-resource write, then a status write), the ConfigMap's data
    assert [e[2] for e in events[3:]] == [("MODIFIED", "VirtualMachine", "v")] * 4 + [
        ("MODIFIED", "ConfigMap", "c")]


def test_writes_keep_the_objects_key_order() -> None:
    """A status write does not copy the status it replaces; the key keeps its place."""
    store = Store()
    store.create("Namespace", {"metadata": {"name": "a"}})
    body = {"status": {"phase": "Running"}, "metadata": {"name": "v", "namespace": "a"},
            "spec": {"runStrategy": "Always"}}
    created = store.create("VirtualMachine", body, keep_status=True)
    order = list(created)
    assert order.index("status") < order.index("spec")
    assert list(store.update_status("VirtualMachine", "a", "v", {"phase": "Stopped"})) == order
    assert list(store.mutate("VirtualMachine", "a", "v",
                             lambda o: o["spec"].update(runStrategy="Halted"))) == order
    assert list(store.replace("VirtualMachine", {**store.get("VirtualMachine", "a", "v"),
                                                 "status": {"phase": "x"}})) == order
    assert store.get("VirtualMachine", "a", "v")["status"] == {"phase": "Stopped"}


def test_writes_with_copy_false_return_the_stored_object() -> None:
    store = _store_with_config_maps()
    mutated = store.mutate("ConfigMap", "a", "x", lambda o: o["data"].update(k="m"), copy=False)
    assert mutated is store.peek("ConfigMap", "a", "x") and mutated["data"] == {"k": "m"}
    unchanged = store.mutate("ConfigMap", "a", "x", lambda o: None, copy=False)
    assert unchanged is mutated
    store.create("VirtualMachine", {"metadata": {"name": "v", "namespace": "a"},
                                    "spec": {"runStrategy": "Always"}})
    status = store.update_status("VirtualMachine", "a", "v", {"phase": "x"}, copy=False)
    assert status is store.peek("VirtualMachine", "a", "v") and status["status"] == {"phase": "x"}
    copied = store.update_status("VirtualMachine", "a", "v", {"phase": "y"})
    assert copied == store.peek("VirtualMachine", "a", "v")
    assert copied is not store.peek("VirtualMachine", "a", "v")
