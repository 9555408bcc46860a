"""The shared-watch loop against a scripted lister/streamer (no server): re-watch, 410, stop."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from statemachine import errors
from statemachine.k8s import ResourceKey
from statemachine.k8s.informer import Informer, StreamHandle

KEY = ResourceKey("v1", "ConfigMap", "ns")


def cm(name: str, rv: int, data: str = "") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)},
            "data": {"v": data}}


class Script:
    """Lists and watch sessions handed out in order; the last session blocks until stopped."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], str]],
                 sessions: list[list[dict[str, Any]] | BaseException]) -> None:
        self.lists = lists
        self.sessions = sessions
        self.watch_rvs: list[str] = []
        self.list_calls = 0

    def lister(self) -> tuple[list[dict[str, Any]], str]:
        self.list_calls += 1
        return self.lists.pop(0) if len(self.lists) > 1 else self.lists[0]

    def streamer(self, rv: str, timeout: int, handle: StreamHandle) -> Iterator[dict[str, Any]]:
        self.watch_rvs.append(rv)
        if self.sessions:
            session = self.sessions.pop(0)
            if isinstance(session, BaseException):
                raise session
            yield from session
            return
        while not handle.stopping:
            time.sleep(0.005)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.cond = threading.Condition()

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        with self.cond:
            meta = obj["metadata"]
            self.events.append((kind, meta["name"], meta["resourceVersion"]))
            self.cond.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, str, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= count, timeout), self.events
            return list(self.events)


def start(script: Script, *handlers: Recorder) -> Informer:
    informer = Informer(KEY, name="test", lister=script.lister, streamer=script.streamer,
                        timeout_range=(60, 60), rand=lambda: 0.0)
    for handler in handlers:
        informer.subscribe(handler)
    informer.start()
    return informer


def test_list_then_watch_feeds_handlers_and_cache() -> None:
    script = Script([([cm("a", 5)], "7")],
                    [[{"type": "MODIFIED", "object": cm("a", 8, "x")},
                      {"type": "ADDED", "object": cm("b", 9)},
                      {"type": "DELETED", "object": cm("a", 10)}]])
    rec = Recorder()
    informer = start(script, rec)
    try:
        assert rec.wait_for(4) == [("ADDED", "a", "5"), ("MODIFIED", "a", "8"),
                                   ("ADDED", "b", "9"), ("DELETED", "a", "10")]
        assert informer.cached("ns", "a") is None
        assert informer.cached("ns", "b") == cm("b", 9)
        assert script.watch_rvs[0] == "7"
    finally:
        informer.stop()
        informer.join(2)


def test_normal_end_rewatches_from_last_seen_version_including_bookmarks() -> None:
    script = Script([([], "3")],
                    [[{"type": "ADDED", "object": cm("a", 4)}],
                     [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}],
                     []])
    rec = Recorder()
    informer = start(script, rec)
    try:
        rec.wait_for(1)
        deadline = time.monotonic() + 5
        while len(script.watch_rvs) < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert script.watch_rvs[:4] == ["3", "4", "12", "12"]
        assert script.list_calls == 1
    finally:
        informer.stop()
        informer.join(2)


def test_gone_relists_and_emits_synthetic_events_for_the_difference() -> None:
    script = Script([([cm("a", 5), cm("b", 6), cm("c", 7)], "7"),
                     ([cm("a", 5), cm("b", 20, "changed"), cm("d", 21)], "22")],
                    [errors.Gone("too old resource version", status=410)])
    rec = Recorder()
    informer = start(script, rec)
    try:
        events = rec.wait_for(6)
        assert events[:3] == [("ADDED", "a", "5"), ("ADDED", "b", "6"), ("ADDED", "c", "7")]
        assert sorted(events[3:]) == [("ADDED", "d", "21"), ("DELETED", "c", "7"),
                                      ("MODIFIED", "b", "20")]
        assert script.list_calls == 2 and informer.relists == 2
        assert informer.cached("ns", "c") is None
        deadline = time.monotonic() + 5
        while len(script.watch_rvs) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert script.watch_rvs[1] == "22"
    finally:
        informer.stop()
        informer.join(2)


def test_transient_errors_back_off_and_resume_from_the_same_version() -> None:
    script = Script([([cm("a", 5)], "5")],
                    [errors.ClusterUnreachable("reset"),
                     errors.TransientClusterError("busy", status=500),
                     [{"type": "MODIFIED", "object": cm("a", 6)}]])
    rec = Recorder()
    informer = start(script, rec)
    try:
        assert rec.wait_for(2)[1] == ("MODIFIED", "a", "6")
        assert script.watch_rvs[:3] == ["5", "5", "5"]
        assert script.list_calls == 1
    finally:
        informer.stop()
        informer.join(2)


def test_late_subscriber_gets_added_for_cached_objects_and_shares_the_watch() -> None:
    script = Script([([cm("a", 5), cm("b", 6)], "6")], [])
    first, second = Recorder(), Recorder()
    informer = start(script, first)
    try:
        first.wait_for(2)
        assert informer.subscribe(second)
        assert sorted(second.wait_for(2)) == [("ADDED", "a", "5"), ("ADDED", "b", "6")]
        assert script.list_calls == 1 and len(script.watch_rvs) == 1
        assert informer.unsubscribe(first) == 1
    finally:
        informer.stop()
        informer.join(2)


def test_stop_ends_the_thread_promptly_while_a_watch_is_open() -> None:
    script = Script([([], "1")], [])
    informer = start(script, Recorder())
    assert informer.wait_synced(5)
    t0 = time.monotonic()
    informer.stop()
    informer.join(2)
    assert not informer._thread.is_alive()
    assert time.monotonic() - t0 < 1.0
    assert not informer.synced
    assert not informer.subscribe(Recorder())  # a stopped informer takes no new subscribers


def test_a_failing_handler_does_not_stop_the_others() -> None:
    def broken(kind: str, obj: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")
    script = Script([([cm("a", 5)], "5")], [])
    rec = Recorder()
    informer = Informer(KEY, name="test", lister=script.lister, streamer=script.streamer,
                        rand=lambda: 0.0)
    informer.subscribe(broken)
    informer.subscribe(rec)
    informer.start()
    try:
        assert rec.wait_for(1) == [("ADDED", "a", "5")]
    finally:
        informer.stop()
        informer.join(2)


def test_streams_that_end_at_once_with_nothing_do_not_spin() -> None:
    calls: list[str] = []

    def empty(rv: str, timeout: int, handle: StreamHandle) -> Iterator[dict[str, Any]]:
        calls.append(rv)
        return iter(())
    informer = Informer(KEY, name="test", lister=lambda: ([], "1"), streamer=empty,
                        rand=lambda: 1.0)
    informer.start()
    try:
        time.sleep(0.5)
        assert 2 <= len(calls) <= 5  # backoff 0.2 s, 0.4 s, ... instead of a busy loop
    finally:
        informer.stop()
        informer.join(2)


def test_the_cache_drops_managed_fields_as_client_go_informers_do() -> None:
    """A real server sends ``metadata.managedFields`` with every object; smrun never reads them,
    so the shared cache does not keep them (listed, watched, or observed from a write's answer)."""
    owned = {"managedFields": [{"manager": "kubectl", "operation": "Apply"}]}
    listed = {"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "1", **owned}}
    watched = {"type": "ADDED", "object": {"metadata": {"name": "b", "namespace": "ns",
                                                        "resourceVersion": "2", **owned}}}
    done = threading.Event()

    def stream(rv: str, timeout: int, handle: StreamHandle) -> Iterator[dict[str, Any]]:
        yield watched
        done.set()
        handle.abort()
        return

    inf = Informer(ResourceKey("v1", "ConfigMap", "ns"), name="t",
                   lister=lambda: ([listed], "1"), streamer=stream)
    inf.start()
    try:
        assert done.wait(5) and inf.wait_synced(5)
        answer = {"metadata": {"name": "c", "namespace": "ns", "resourceVersion": "3", **owned}}
        inf.observe(answer)
        for name in ("a", "b", "c"):
            cached = inf.cached("ns", name)
            assert cached is not None and "managedFields" not in cached["metadata"], name
        assert "managedFields" in answer["metadata"]  # the caller's own object is left alone
    finally:
        inf.stop()


def test_an_own_write_survives_a_list_sent_before_it() -> None:
    """Read-your-writes before the first list is in: the informer starts, its list is sent,
    we create an object (observe), and the list answers without it. The cache must still hold
    the object (an ``object is none`` readiness would otherwise pass at once), until the watch
    shows it; an observed write that the list already reflects is not kept aside."""
    listing, created = threading.Event(), threading.Event()

    def lister() -> tuple[list[dict[str, Any]], str]:
        listing.set()
        assert created.wait(5)
        return [cm("old", 3)], "5"  # taken at resourceVersion 5, before our create (6)

    script = Script([([], "0")], [])
    informer = Informer(KEY, name="test", lister=lister, streamer=script.streamer,
                        rand=lambda: 0.0)
    informer.start()
    try:
        assert listing.wait(5)
        informer.observe(cm("mine", 6))
        informer.observe(cm("old", 3))  # already in the list: nothing to keep
        created.set()
        assert informer.wait_synced(5)
        mine = informer.cached("ns", "mine")
        assert mine is not None and mine["metadata"]["resourceVersion"] == "6"
        assert informer.cached("ns", "old") is not None
        assert set(informer._observed) == {("ns", "mine")}
    finally:
        informer.stop()
        informer.join(2)
