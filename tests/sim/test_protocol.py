"""Protocol details of the simulated API server, the store and the controller framework that
the client-level tests (kubectl, DynamicClient) do not pin down."""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from statemachine.errors import Conflict, DefinitionError, Gone, NotFound
from statemachine.sim import watch
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.controller import ClusterContext, Controller, Runner, SimNetwork
from statemachine.sim.serve import main as serve_main
from statemachine.sim.store import Obj, Store
from tests.polling import wait_for

MakeSim = Callable[..., SimulatedClusters]


class Raw:
    """A keep-alive HTTPS connection to one simulated cluster."""

    def __init__(self, sim: SimulatedClusters, cluster: str = "source") -> None:
        parts = urlsplit(sim.url(cluster))
        ctx = ssl.create_default_context(cafile=str(sim.ca_path))
        self.conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=ctx,
                                                timeout=10)
        self.token = sim.token(cluster)

    def call(self, method: str, path: str, body: Any = None,
             ctype: str = "application/json") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": ctype}
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None


@pytest.fixture
def quiet(make_sim: MakeSim) -> SimulatedClusters:
    return make_sim(controllers=False)


def test_discovery(quiet: SimulatedClusters) -> None:
    raw = Raw(quiet)
    assert raw.call("GET", "/version")[1]["major"] == "1"
    assert raw.call("GET", "/api")[1]["versions"] == ["v1"]
    groups = {g["name"]: g for g in raw.call("GET", "/apis")[1]["groups"]}
    assert {"kubevirt.io", "cdi.kubevirt.io", "backup.kubevirt.io", "batch"} <= set(groups)
    assert groups["backup.kubevirt.io"]["preferredVersion"]["version"] == "v1alpha1"
    status, doc = raw.call("GET", "/apis/kubevirt.io/v1")
    resources = {r["name"]: r for r in doc["resources"]}
    assert resources["virtualmachines"]["kind"] == "VirtualMachine"
    assert resources["virtualmachines"]["namespaced"] is True
    assert "vm" in resources["virtualmachines"]["shortNames"]
    assert resources["virtualmachines/status"]["verbs"] == ["get", "patch", "update"]
    assert raw.call("GET", "/apis/kubevirt.io")[1]["kind"] == "APIGroup"
    assert raw.call("GET", "/apis/nope.io/v1")[0] == 404
    assert raw.call("GET", "/openapi/v2")[0] == 200  # JSON (tests/sim/test_openapi.py)


def test_status_errors_and_methods(quiet: SimulatedClusters) -> None:
    raw = Raw(quiet)
    status, body = raw.call("GET", "/apis/kubevirt.io/v1/namespaces/default/virtualmachines/x")
    assert status == 404 and body == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'virtualmachines.kubevirt.io "x" not found', "reason": "NotFound",
        "details": {"name": "x", "group": "kubevirt.io", "kind": "virtualmachines"}, "code": 404}
    assert raw.call("PUT", "/api/v1/namespaces/default/configmaps", {})[0] == 405
    assert raw.call("GET", "/api/v1/namespaces/default/configmaps/x/scale")[0] == 404
    status, body = raw.call("POST", "/api/v1/namespaces/missing/configmaps",
                            {"metadata": {"name": "c"}})
    assert status == 404 and body["message"] == 'namespaces "missing" not found'
    status, body = raw.call("POST", "/api/v1/namespaces/default/configmaps",
                            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}})
    assert status == 400 and body["reason"] == "BadRequest"
    status, body = raw.call("PATCH", "/api/v1/namespaces/default/configmaps/c", {},
                            ctype="text/plain")
    assert status == 415
    # dryRun=All answers as if created but stores nothing
    status, body = raw.call("POST", "/api/v1/namespaces/default/configmaps?dryRun=All",
                            {"metadata": {"name": "dry"}})
    assert status == 201 and body["metadata"]["name"] == "dry"
    assert quiet.store("source").try_get("ConfigMap", "default", "dry") is None
    # unknown token
    raw.token = "nope"
    status, body = raw.call("GET", "/api")
    assert status == 401 and body["reason"] == "Unauthorized"


def test_tcp_nodelay_on_accepted_sockets(quiet: SimulatedClusters) -> None:
    raw = Raw(quiet)
    raw.call("GET", "/version")
    server = quiet.servers["source"]
    with server._conns_lock:  # white-box: the server keeps its open connections
        conns = list(server._conns)
    assert conns
    assert all(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for c in conns)


def test_store_versions_generation_and_noop() -> None:
    store = Store()
    store.create("Namespace", {"metadata": {"name": "default"}})
    rv0 = store.resource_version
    vm = store.create("VirtualMachine", {"metadata": {"name": "v", "namespace": "default"},
                                         "spec": {"runStrategy": "Halted"}})
    assert vm["metadata"]["resourceVersion"] == str(rv0 + 1)
    same = store.patch("VirtualMachine", "default", "v", {"spec": {"runStrategy": "Halted"}})
    assert same["metadata"]["resourceVersion"] == vm["metadata"]["resourceVersion"]
    assert store.resource_version == rv0 + 1
    st = store.update_status("VirtualMachine", "default", "v", {"printableStatus": "Stopped"})
    assert st["metadata"]["generation"] == 1
    spec = store.patch("VirtualMachine", "default", "v", {"spec": {"runStrategy": "Always"}})
    assert spec["metadata"]["generation"] == 2 and spec["status"]["printableStatus"] == "Stopped"
    with pytest.raises(Conflict):
        store.patch("VirtualMachine", "default", "v", {"metadata": {"resourceVersion": "1"}})
    events = [(e.type, e.resource_version) for e in store.events_since(rv0)]
    assert events == [("ADDED", rv0 + 1), ("MODIFIED", rv0 + 2), ("MODIFIED", rv0 + 3)]


def test_store_garbage_collection_and_namespace_delete() -> None:
    store = Store()
    for ns in ("a", "b"):
        store.create("Namespace", {"metadata": {"name": ns}})
    owner = store.create("DataVolume", {"metadata": {"name": "dv", "namespace": "a"}})
    ref = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume", "name": "dv",
           "uid": owner["metadata"]["uid"], "controller": True}
    store.create("PersistentVolumeClaim", {"metadata": {"name": "dv", "namespace": "a",
                                                        "ownerReferences": [ref]}})
    store.create("ConfigMap", {"metadata": {"name": "keep", "namespace": "b"}})
    store.delete("DataVolume", "a", "dv")
    # The garbage collector works asynchronously, as kube-controller-manager's does.
    wait_for(lambda: store.try_get("PersistentVolumeClaim", "a", "dv") is None, what="GC")
    store.create("ConfigMap", {"metadata": {"name": "gone", "namespace": "a"}})
    store.delete("Namespace", "", "a")
    wait_for(lambda: store.try_get("Namespace", "", "a") is None, what="namespace removal")
    assert store.list("ConfigMap") == [store.get("ConfigMap", "b", "keep")]
    with pytest.raises(NotFound):
        store.create("ConfigMap", {"metadata": {"name": "x", "namespace": "a"}})
    store.close()


def test_store_history_expires() -> None:
    store = Store(history=3)
    store.create("Namespace", {"metadata": {"name": "default"}})
    for i in range(10):
        store.create("ConfigMap", {"metadata": {"name": f"c{i}", "namespace": "default"}})
    with pytest.raises(Gone) as err:
        store.events_since(1)
    assert err.value.status == 410 and "too old resource version: 1" in str(err.value)
    assert [e.resource_version for e in store.events_since(10)] == [11]


def test_watch_stream_selectors_bookmarks_and_stop() -> None:
    store = Store()
    store.create("Namespace", {"metadata": {"name": "default"}})
    store.create("ConfigMap", {"metadata": {"name": "a", "namespace": "default",
                                            "labels": {"app": "x"}}})
    req = watch.WatchRequest(store.kind("ConfigMap"), "default", "app=x", None, "0",
                             timeout=10, bookmarks=True)
    lines: list[dict[str, Any]] = []
    stopping = threading.Event()

    def send(data: bytes) -> None:
        lines.append(json.loads(data))

    t = threading.Thread(target=watch.stream, args=(store, req, send, lambda: False, stopping),
                         kwargs={"bookmark_every": 0.2}, daemon=True)
    t.start()
    time.sleep(0.1)
    store.patch("ConfigMap", "default", "a", {"metadata": {"labels": {"app": "y"}}})  # leaves
    store.patch("ConfigMap", "default", "a", {"metadata": {"labels": {"app": "x"}}})  # enters
    store.create("ConfigMap", {"metadata": {"name": "b", "namespace": "default"}})  # never in
    time.sleep(0.6)
    stopping.set()
    t.join(timeout=2)
    assert not t.is_alive()
    kinds = [(ln["type"], ln["object"]["metadata"].get("name")) for ln in lines
             if ln["type"] != "BOOKMARK"]
    assert kinds == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a")]
    bookmarks = [ln for ln in lines if ln["type"] == "BOOKMARK"]
    assert bookmarks and bookmarks[-1]["object"]["metadata"] == {
        "resourceVersion": str(store.resource_version)}


def test_shutdown_ends_open_watches(make_sim: MakeSim) -> None:
    sim = make_sim(controllers=False)
    raw = Raw(sim)
    raw.conn.request("GET", "/api/v1/configmaps?watch=true",
                     headers={"Authorization": f"Bearer {raw.token}"})
    resp = raw.conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
    started = time.monotonic()
    sim.stop()
    try:
        resp.read()
    except (http.client.IncompleteRead, ConnectionError, ssl.SSLError):
        pass
    assert time.monotonic() - started < 5


def test_seed_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "seed.yaml"
    bad.write_text("source:\n  - apiVersion: v1\n    kind: Gadget\n    metadata: {name: g}\n")
    with pytest.raises(DefinitionError) as err:
        SimulatedClusters(seed=bad)
    assert str(err.value) == f"{bad}: source[0].kind: v1 Gadget is not served by the simulator"
    assert serve_main(["--seed", str(bad)]) == 2
    out = capsys.readouterr()
    assert out.err.strip().splitlines() == [str(err.value)]
    bad.write_text("middle: []\n")
    assert serve_main(["--seed", str(bad)]) == 2
    assert "middle: unknown cluster" in capsys.readouterr().err


class _Recorder(Controller):
    watches = ("ConfigMap",)

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.gone: list[str] = []

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        self.calls.append((obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
        return obj["metadata"].get("labels", {}).get("requeue") == "yes"

    def deleted(self, ctx: ClusterContext, obj: Obj) -> None:
        self.gone.append(obj["metadata"]["name"])


def test_runner_reconciles_once_per_tick_per_object() -> None:
    store = Store()
    store.create("Namespace", {"metadata": {"name": "default"}})
    ctx = ClusterContext("source", store, SimNetwork())
    rec = _Recorder()
    runner = Runner(ctx, [rec], resync_ticks=1000)
    runner._unsubscribe = store.subscribe(runner._on_event)  # no thread: ticks by hand
    store.create("ConfigMap", {"metadata": {"name": "a", "namespace": "default"}})
    for i in range(3):
        store.patch("ConfigMap", "default", "a", {"data": {"i": str(i)}})
    store.create("ConfigMap", {"metadata": {"name": "b", "namespace": "default",
                                            "labels": {"requeue": "yes"}}})
    runner.step()
    assert sorted(n for n, _ in rec.calls) == ["a", "b"]  # four events on a, one call
    assert dict(rec.calls)["a"] == store.get("ConfigMap", "default", "a")["metadata"][
        "resourceVersion"]  # with a fresh copy
    rec.calls.clear()
    runner.step()
    assert [n for n, _ in rec.calls] == ["b"]  # requeued; a had no new event
    store.delete("ConfigMap", "default", "a")
    runner.step()
    assert rec.gone == ["a"]


def test_sim_network() -> None:
    net = SimNetwork()
    target = ClusterContext("target", Store(), net)
    net.clusters["target"] = target
    net.listen("sync.target:9185", "target")
    assert net.connect("sync.target:9185") is target
    assert net.connect("nowhere:1") is None
    net.partition("sync.target:9185")
    assert net.connect("sync.target:9185") is None
    net.heal("sync.target:9185")
    assert net.connect("sync.target:9185") is target


def test_strategic_merge_for_builtin_lists() -> None:
    store = Store()
    store.create("Namespace", {"metadata": {"name": "default"}})
    store.create("Job", {"metadata": {"name": "j", "namespace": "default"}, "spec": {
        "template": {"spec": {"containers": [
            {"name": "a", "image": "a:1", "command": ["run"]},
            {"name": "b", "image": "b:1"}]}}}})
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
        "containers": [{"name": "a", "image": "a:2"}, {"name": "b", "$patch": "delete"}]}}}}
    job = store.patch("Job", "default", "j", patch, "strategic")
    assert job["spec"]["template"]["spec"]["containers"] == [
        {"name": "a", "image": "a:2", "command": ["run"]}]
