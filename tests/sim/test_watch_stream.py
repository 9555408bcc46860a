"""Watches as kube-apiserver streams them: 410 as an ERROR event, bookmarks (periodic and before
the timeout), sendInitialEvents with the initial-events-end bookmark, timeoutSeconds, a future
resourceVersion. Through the ``kubernetes`` client (raw streams) and lightkube."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from statemachine.sim.cluster import SimulatedClusters

MakeSim = Callable[..., SimulatedClusters]
CMS = "/api/v1/namespaces/default/configmaps"


def _cm(name: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"}, "data": dict(data)}


def _stream(dyn: Any, query: str, *, stop_after: Callable[[list[dict[str, Any]]], bool]
            | None = None, arrivals: list[float] | None = None) -> tuple[list[dict[str, Any]], float]:
    """The events of one watch request and how long the stream lasted (seconds); ``arrivals``
    gets each event's arrival, in seconds after the request."""
    started = time.monotonic()
    resp = dyn.request("get", f"{CMS}?{query}", serialize=False, _preload_content=False)
    events: list[dict[str, Any]] = []
    buffer = b""
    try:
        for chunk in resp.stream(amt=None, decode_content=False):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    events.append(json.loads(line))
                    if arrivals is not None:
                        arrivals.append(time.monotonic() - started)
            if stop_after is not None and stop_after(events):
                break
    finally:
        resp.release_conn()
    return events, time.monotonic() - started


def test_too_old_resource_version_is_one_error_event(make_sim: MakeSim,
                                                     dynamic_client: Any) -> None:
    sim = make_sim(controllers=False, history=3)
    store = sim.store("source")
    old = store.resource_version
    for i in range(6):
        store.create("ConfigMap", _cm(f"c{i}"))
    events, took = _stream(dynamic_client(sim), f"watch=true&resourceVersion={old}"
                                                "&timeoutSeconds=10")
    oldest = store.resource_version - 3
    assert events == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {old} ({oldest})", "reason": "Expired",
        "code": 410}}]
    assert took < 5  # the server ends the stream after the error
    # The oldest version still kept works; other kinds keep their own history.
    events, _ = _stream(dynamic_client(sim), f"watch=true&resourceVersion={oldest}"
                                             "&timeoutSeconds=1")
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "ADDED"]


def test_bookmarks_periodic_and_before_the_timeout(sim: SimulatedClusters,
                                                   dynamic_client: Any) -> None:
    store = sim.store("source")
    rv = store.resource_version
    sim.servers["source"].bookmark_every = 0.5
    writer = threading.Timer(0.3, lambda: store.create("ConfigMap", _cm("during")))
    writer.start()
    events, took = _stream(dynamic_client(sim), f"watch=true&resourceVersion={rv}"
                                                "&allowWatchBookmarks=true&timeoutSeconds=3")
    writer.join()
    assert 2.5 < took < 5
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "during"
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2
    for b in bookmarks:
        assert b["object"] == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {
            "resourceVersion": b["object"]["metadata"]["resourceVersion"]}}
    assert bookmarks[-1]["object"]["metadata"]["resourceVersion"] == str(store.resource_version)
    # Without allowWatchBookmarks there are none; a watch shorter than 2 s gets no pre-timeout one.
    sim.servers["source"].bookmark_every = 60
    plain, _ = _stream(dynamic_client(sim), f"watch=true&resourceVersion={rv}&timeoutSeconds=1")
    assert [e["type"] for e in plain] == ["ADDED"]
    # With the default heartbeat (a minute), the one bookmark of a 3 s watch comes 2 s before
    # its end, so a client resumes from a fresh resourceVersion.
    arrivals: list[float] = []
    pre, took = _stream(dynamic_client(sim), f"watch=true&resourceVersion={store.resource_version}"
                                              "&allowWatchBookmarks=true&timeoutSeconds=3",
                        arrivals=arrivals)
    assert [e["type"] for e in pre] == ["BOOKMARK"] and 2.5 < took < 5
    assert 0.8 < arrivals[0] < 2.4 and took - arrivals[0] > 1.0


def test_send_initial_events_ends_with_the_annotated_bookmark(sim: SimulatedClusters,
                                                              dynamic_client: Any) -> None:
    store = sim.store("source")
    store.create("ConfigMap", _cm("one", a="1"))
    store.create("ConfigMap", _cm("two", a="2"))
    state_rv = store.resource_version
    later = threading.Timer(0.5, lambda: store.create("ConfigMap", _cm("three")))
    later.start()

    def done(events: list[dict[str, Any]]) -> bool:
        return any(e["object"]["metadata"].get("name") == "three" for e in events)
    events, _ = _stream(dynamic_client(sim), "watch=true&sendInitialEvents=true"
                        "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
                        "&timeoutSeconds=10", stop_after=done)
    later.join()
    names = [(e["type"], e["object"]["metadata"].get("name")) for e in events]
    initial = [n for t, n in names[:-2] if t == "ADDED"]
    assert {"one", "two"} <= set(initial)
    end = events[len(initial)]
    assert end == {"type": "BOOKMARK", "object": {"kind": "ConfigMap", "apiVersion": "v1",
                                                  "metadata": {
        "resourceVersion": str(state_rv),
        "annotations": {"k8s.io/initial-events-end": "true"}}}}
    assert names[-1] == ("ADDED", "three")
    # sendInitialEvents=false: no synthetic events, only what happens next.
    store.create("ConfigMap", _cm("four"))
    quiet, _ = _stream(dynamic_client(sim), "watch=true&sendInitialEvents=false"
                       "&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")
    assert quiet == []


def test_future_resource_version_is_a_504_error_event(sim: SimulatedClusters,
                                                      dynamic_client: Any) -> None:
    future = sim.store("source").resource_version + 50
    events, took = _stream(dynamic_client(sim), f"watch=true&resourceVersion={future}"
                                                "&timeoutSeconds=30")
    assert 2.5 < took < 6 and len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["code"], status["reason"]) == (504, "Timeout")
    assert status["message"].startswith(f"Timeout: Too large resource version: {future}, current:")


def test_lightkube_watch_from_a_list_version(sim: SimulatedClusters) -> None:
    from lightkube import Client, KubeConfig
    from lightkube.resources.core_v1 import ConfigMap
    store = sim.store("source")
    store.create("ConfigMap", _cm("before"))
    client = Client(config=KubeConfig.from_file(str(sim.kubeconfig_path)), field_manager="t")
    listed = client.list(ConfigMap, namespace="default")
    assert "before" in [cm.metadata.name for cm in listed if cm.metadata]
    rv = listed.resourceVersion
    threading.Timer(0.3, lambda: store.patch("ConfigMap", "default", "before",
                                             {"data": {"k": "v"}})).start()
    seen = []
    for op, cm in client.watch(ConfigMap, namespace="default", resource_version=rv):
        seen.append((op, cm.metadata.name if cm.metadata else ""))
        break
    assert seen == [("MODIFIED", "before")]
