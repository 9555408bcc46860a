"""Shared watches through KubeCluster against the simulator: latency, cache, resume, 410, stop."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from statemachine.k8s import ObjectRef, ResourceKey
from statemachine.k8s.client import KubeCluster

CM = ResourceKey("v1", "ConfigMap", "default")
NAMESPACES = {"source": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
                         {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}],
              "target": []}


def configmap(name: str, ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}}


class Recorder:
    """A handler recording (type, name, when) and letting the test wait for an event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []
        self.cond = threading.Condition()

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        with self.cond:
            self.events.append((kind, obj["metadata"]["name"], time.monotonic()))
            self.cond.notify_all()

    def wait_for(self, kind: str, name: str, timeout: float = 5.0) -> float:
        """Seconds at which the event arrived (monotonic)."""
        def found() -> float | None:
            return next((t for k, n, t in self.events if k == kind and n == name), None)
        with self.cond:
            assert self.cond.wait_for(lambda: found() is not None, timeout), \
                f"no {kind} {name} in {self.events}"
            at = found()
            assert at is not None
            return at

    def names(self, kind: str) -> list[str]:
        with self.cond:
            return [n for k, n, _ in self.events if k == kind]


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("watch-")]


def test_events_arrive_within_milliseconds(kube: KubeCluster) -> None:
    rec = Recorder()
    sub = kube.watch(CM, rec)
    informer = kube.informer(CM)
    assert informer is not None and informer.wait_synced(5)
    ref = ObjectRef("v1", "ConfigMap", "default", "fast")

    t0 = time.monotonic()
    kube.create(configmap("fast"))
    added = rec.wait_for("ADDED", "fast") - t0
    t1 = time.monotonic()
    kube.patch(ref, {"data": {"k": "w"}})
    modified = rec.wait_for("MODIFIED", "fast") - t1
    t2 = time.monotonic()
    kube.delete(ref)
    deleted = rec.wait_for("DELETED", "fast") - t2
    # Typically ~1-3 ms; the bound leaves room for a loaded 2-core machine.
    assert max(added, modified, deleted) < 0.5, (added, modified, deleted)
    sub.close()


def test_get_is_served_from_the_watch_cache(kube: KubeCluster) -> None:
    kube.create(configmap("cached"))
    rec = Recorder()
    kube.watch(CM, rec)
    rec.wait_for("ADDED", "cached")
    ref = ObjectRef("v1", "ConfigMap", "default", "cached")
    kube.patch(ref, {"data": {"k": "new"}})
    rec.wait_for("MODIFIED", "cached")
    gets_before = kube.stats().get("get", 0)
    got = kube.get(ref)
    assert got is not None and got["data"] == {"k": "new"}
    assert kube.get(ObjectRef("v1", "ConfigMap", "default", "absent")) is None
    assert kube.stats().get("get", 0) == gets_before  # no request went out
    got["data"]["k"] = "mutated by caller"  # a copy: the cache is not corrupted
    again = kube.get(ref)
    assert again is not None and again["data"] == {"k": "new"}
    # Refs the watch does not cover still go to the server.
    assert kube.get(ObjectRef("v1", "ConfigMap", "kube-system", "x")) is None
    assert kube.stats()["get"] == gets_before + 1


def test_second_subscriber_shares_the_watch_and_gets_the_cache(kube: KubeCluster) -> None:
    kube.create(configmap("one"))
    kube.create(configmap("two"))
    first, second = Recorder(), Recorder()
    sub1 = kube.watch(CM, first)
    first.wait_for("ADDED", "two")
    sub2 = kube.watch(CM, second)
    assert sorted(second.names("ADDED")) == ["one", "two"]
    kube.create(configmap("three"))
    first.wait_for("ADDED", "three")
    second.wait_for("ADDED", "three")
    stats = kube.stats()
    assert stats["list"] == 1 and stats["watch"] == 1
    assert len([t for t in watch_threads() if "ConfigMap:default" in t.name]) == 1
    sub1.close()
    kube.create(configmap("four"))
    second.wait_for("ADDED", "four")
    assert "four" not in first.names("ADDED")
    sub2.close()
    assert kube.informer(CM) is None  # the last subscriber leaving stops the watch


def test_watch_resumes_after_the_server_ends_the_stream(
        sim: Any, make_kube: Callable[..., KubeCluster]) -> None:
    kube = make_kube(sim, watch_timeout=(1, 1))  # the server closes each stream after 1 s
    rec = Recorder()
    kube.watch(CM, rec)
    informer = kube.informer(CM)
    assert informer is not None and informer.wait_synced(5)
    deadline = time.monotonic() + 10
    while kube.stats()["watch"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    t0 = time.monotonic()
    kube.create(configmap("after-resume"))
    assert rec.wait_for("ADDED", "after-resume") - t0 < 0.5
    stats = kube.stats()
    assert stats["watch"] >= 3 and stats["list"] == 1  # re-watched from the RV, no re-list


def test_expired_resource_version_relists_and_keeps_watching(
        make_sim: Callable[..., Any], make_kube: Callable[..., KubeCluster]) -> None:
    """The informer's watch is down (its thread is stuck in a handler while the server ends the
    stream) during more writes than the server's small history keeps: the re-watch gets 410, the
    informer re-lists, and its cache and the events it emits match the server afterwards."""
    sim = make_sim(seed=NAMESPACES, controllers=False, history=5)
    kube = make_kube(sim, watch_timeout=(1, 1))
    key = ResourceKey("v1", "ConfigMap", "a")
    for name in ("keep", "change", "remove", "noise"):
        kube.create(configmap(name, ns="a"))
    gate = threading.Event()
    rec = Recorder()

    def stall(kind: str, obj: dict[str, Any]) -> None:
        rec(kind, obj)
        if obj["metadata"]["name"] == "stall":
            gate.wait(10)
    kube.watch(key, stall)
    rec.wait_for("ADDED", "noise")
    informer = kube.informer(key)
    assert informer is not None and informer.relists == 1
    kube.create(configmap("stall", ns="a"))
    rec.wait_for("ADDED", "stall")
    time.sleep(1.5)  # the server ends the 1 s stream; the stuck informer cannot re-watch yet
    store = sim.store("source")
    store.patch("ConfigMap", "a", "change", {"data": {"k": "changed"}})
    store.delete("ConfigMap", "a", "remove")
    store.create("ConfigMap", configmap("new", ns="a"))
    for i in range(10):  # more changes of the kind than the history keeps
        store.patch("ConfigMap", "a", "noise", {"data": {"i": str(i)}})
    gate.set()
    deadline = time.monotonic() + 10
    while informer.relists < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert informer.relists == 2 and kube.stats()["list"] == 2
    rec.wait_for("DELETED", "remove")
    rec.wait_for("ADDED", "new")
    assert rec.names("MODIFIED").count("change") == 1
    assert rec.names("ADDED").count("keep") == 1  # unchanged objects are not re-announced
    served = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
              for o in store.list("ConfigMap", "a")}
    cached = {o["metadata"]["name"]: o["metadata"]["resourceVersion"]
              for o in informer.snapshot()}
    assert cached == served and set(served) == {"keep", "change", "noise", "stall", "new"}
    kube.create(configmap("after", ns="a"))
    rec.wait_for("ADDED", "after")


def test_close_stops_every_watch_thread_promptly(
        sim: Any, make_kube: Callable[..., KubeCluster]) -> None:
    kube = make_kube(sim)
    for ns in ("default", "kube-system"):
        kube.watch(ResourceKey("v1", "ConfigMap", ns), Recorder())
    kube.watch(ResourceKey("kubevirt.io/v1", "VirtualMachine"), Recorder())
    ours = [t for t in watch_threads() if t.name.startswith("watch-source:")]
    assert len(ours) == 3
    t0 = time.monotonic()
    kube.close()
    assert time.monotonic() - t0 < 2.0
    assert not any(t.is_alive() for t in ours)


def test_our_own_writes_are_visible_in_the_cache_at_once(kube: KubeCluster) -> None:
    """Read-your-writes: after create/patch returns, get() (served by the shared watch) shows the
    new version even before the watch event arrives, so a readiness check that runs right after a
    create never mistakes the object for absent."""
    # A handler that blocks the watch thread holds back every event, so only observe() can
    # have put the object into the cache.
    gate = threading.Event()
    sub = kube.watch(CM, lambda kind, obj: gate.wait(5))
    informer = kube.informer(CM)
    assert informer is not None and informer.wait_synced(5)
    try:
        ref = ObjectRef("v1", "ConfigMap", "default", "mine")
        created = kube.create(configmap("mine"))
        seen = kube.get(ref)
        assert seen is not None and seen["metadata"]["uid"] == created["metadata"]["uid"]
        patched = kube.patch(ref, {"data": {"k": "w"}})
        seen = kube.get(ref)
        assert seen is not None and seen["data"] == {"k": "w"}
        assert seen["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    finally:
        gate.set()
        sub.close()
    # Once the (older) watch events drain, the cache still holds the newest version.
    time.sleep(0.2)
    seen = kube.get(ObjectRef("v1", "ConfigMap", "default", "mine"))
    assert seen is not None and seen["data"] == {"k": "w"}
