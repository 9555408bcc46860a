"""Server-side printing: kubectl's Table requests get the columns a real cluster prints.

Through kubectl (``get``, ``-o wide``, a single object, ``get -w``) and raw Table requests with the
``kubernetes`` client (column definitions, cell types, ``includeObject``, ``v1beta1``).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine.sim import printing
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.kinds import Kind
from tests.conftest import KUBECTL, run_kubectl

MakeSim = Callable[..., SimulatedClusters]
TABLE_V1 = "application/json;as=Table;v=v1;g=meta.k8s.io"
KUBECTL_ACCEPT = f"{TABLE_V1},application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"

VM = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
      "metadata": {"name": "vm1", "namespace": "default"},
      "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {
          "devices": {}, "memory": {"guest": "1Gi"}}}}}}
DV = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
      "metadata": {"name": "dv1", "namespace": "default"},
      "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


def _header(out: str) -> list[str]:
    return out.splitlines()[0].split()


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


@pytest.fixture
def running(make_sim: MakeSim, tmp_path: Path) -> SimulatedClusters:
    sim = make_sim(seed={"source": [VM, DV], "target": []}, tick=0.02)
    assert sim.settle(timeout=15)
    return sim


def _kubectl(sim: SimulatedClusters, tmp_path: Path, *args: str) -> str:
    if not Path(KUBECTL).exists():
        pytest.skip("kubectl is not installed")
    cache = tmp_path / "kubectl-cache"
    cache.mkdir(exist_ok=True)
    return run_kubectl(sim, cache, *args).stdout


def test_kubectl_get_kubevirt_and_cdi_columns(running: SimulatedClusters, tmp_path: Path) -> None:
    vm = _kubectl(running, tmp_path, "get", "vm")
    assert _header(vm) == ["NAME", "AGE", "STATUS", "READY"]
    assert _rows(vm)[0][0] == "vm1" and _rows(vm)[0][2:] == ["Running", "True"]
    vmi = _kubectl(running, tmp_path, "get", "vmi")
    assert _header(vmi) == ["NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"]
    row = _rows(vmi)[0]
    assert row[0] == "vm1" and row[2] == "Running" and row[3].count(".") == 3 and row[5] == "True"
    wide = _kubectl(running, tmp_path, "get", "vmi", "-o", "wide")
    assert _header(wide) == ["NAME", "AGE", "PHASE", "IP", "NODENAME", "READY",
                             "LIVE-MIGRATABLE", "PAUSED"]
    dv = _kubectl(running, tmp_path, "get", "dv")
    assert _header(dv) == ["NAME", "PHASE", "PROGRESS", "RESTARTS", "AGE"]
    assert _rows(dv)[0][:2] == ["dv1", "Succeeded"]
    one = _kubectl(running, tmp_path, "get", "vm", "vm1")
    assert _header(one) == ["NAME", "AGE", "STATUS", "READY"] and len(_rows(one)) == 1
    # A kind without printer columns prints NAME and AGE, as a CRD without columns does.
    store = running.store("source")
    store.create("VirtualMachineInstancetype", {"metadata": {"name": "small",
                                                             "namespace": "default"}})
    assert _header(_kubectl(running, tmp_path, "get", "vminstancetype")) == ["NAME", "AGE"]


def test_kubectl_get_core_kinds_and_wide(sim: SimulatedClusters, tmp_path: Path) -> None:
    store = sim.store("source")
    store.create("ConfigMap", {"metadata": {"name": "cm", "namespace": "default"},
                               "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}})
    store.create("Secret", {"metadata": {"name": "s", "namespace": "default"},
                            "type": "Opaque", "data": {"k": "dg=="}})
    started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    store.create("Pod", {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"nodeName": "node01", "containers": [{"name": "a", "image": "x"},
                                                      {"name": "b", "image": "y"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}], "containerStatuses": [
            {"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}},
             "lastState": {"terminated": {"finishedAt": started, "exitCode": 1}}},
            {"name": "b", "ready": False, "restartCount": 0,
             "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}, keep_status=True)
    pods = _kubectl(sim, tmp_path, "get", "pods")
    assert _header(pods) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    line = pods.splitlines()[1]
    assert line.split()[:4] == ["p", "1/2", "CrashLoopBackOff", "2"] and "(3m" in line
    wide = _kubectl(sim, tmp_path, "get", "pods", "-o", "wide")
    assert _header(wide) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                             "NOMINATED", "NODE", "READINESS", "GATES"]
    assert wide.splitlines()[1].split()[-4:] == ["10.0.0.7", "node01", "<none>", "<none>"]
    cms = _kubectl(sim, tmp_path, "get", "cm", "cm")
    assert _header(cms) == ["NAME", "DATA", "AGE"] and _rows(cms)[0][:2] == ["cm", "3"]
    secrets = _kubectl(sim, tmp_path, "get", "secret", "s")
    assert _header(secrets) == ["NAME", "TYPE", "DATA", "AGE"]
    assert _rows(secrets)[0][:3] == ["s", "Opaque", "1"]
    ns = _kubectl(sim, tmp_path, "get", "ns", "default")
    assert _header(ns) == ["NAME", "STATUS", "AGE"] and _rows(ns)[0][:2] == ["default", "Active"]
    # --sort-by asks for includeObject=Object and sorts the rows on the objects kubectl gets back.
    store.create("ConfigMap", {"metadata": {"name": "a-first", "namespace": "default"},
                               "data": {"z": "2"}})
    store.create("ConfigMap", {"metadata": {"name": "b-second", "namespace": "default"},
                               "data": {"z": "1"}})
    by_z = _kubectl(sim, tmp_path, "get", "cm", "--sort-by=.data.z")
    names = [row[0] for row in _rows(by_z)]
    assert _header(by_z) == ["NAME", "DATA", "AGE"]
    assert names.index("b-second") < names.index("a-first")  # by z, not by name
    events = store.create("Event", {
        "metadata": {"name": "p.1", "namespace": "default"}, "type": "Warning",
        "reason": "BackOff", "message": "Back-off restarting failed container ",
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
        "source": {"component": "kubelet", "host": "node01"}, "count": 3,
        "firstTimestamp": started, "lastTimestamp": started})
    assert events["metadata"]["name"] == "p.1"
    ev = _kubectl(sim, tmp_path, "get", "events")
    assert _header(ev) == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert _rows(ev)[0][0].startswith("3m") and _rows(ev)[0][1:4] == ["Warning", "BackOff",
                                                                     "pod/p"]
    assert ev.splitlines()[1].endswith("Back-off restarting failed container")
    # Kinds without a built-in printer get the generic table: NAME, CREATED AT (a timestamp).
    store.create("Role", {"metadata": {"name": "r", "namespace": "default"}, "rules": []})
    roles = _kubectl(sim, tmp_path, "get", "roles")
    assert _header(roles) == ["NAME", "CREATED", "AT"]
    assert _rows(roles)[0][1].endswith("Z") and "T" in _rows(roles)[0][1]


def _table(sim: SimulatedClusters, dynamic_client: Any, path: str,
           accept: str = KUBECTL_ACCEPT) -> tuple[int, Any]:
    raw = dynamic_client(sim).request("get", path, header_params={"Accept": accept},
                                      serialize=False)
    return raw.status, json.loads(raw.data)


def test_table_shape_cells_and_include_object(running: SimulatedClusters,
                                              dynamic_client: Any) -> None:
    from kubernetes.client.exceptions import ApiException
    status, table = _table(running, dynamic_client,
                           "/apis/cdi.kubevirt.io/v1beta1/namespaces/default/datavolumes")
    assert status == 200 and table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"]["resourceVersion"].isdigit()
    defs = table["columnDefinitions"]
    assert [(c["name"], c["type"], c["format"], c["priority"]) for c in defs] == [
        ("Name", "string", "name", 0), ("Phase", "string", "", 0),
        ("Progress", "string", "", 0), ("Restarts", "integer", "", 0), ("Age", "date", "", 0)]
    assert defs[1]["description"] == "The phase the data volume is in"
    cells = table["rows"][0]["cells"]
    assert cells[:2] == ["dv1", "Succeeded"]
    # An integer column: the restart count as a JSON integer (null while status omits it).
    assert cells[3] is None or (isinstance(cells[3], int) and not isinstance(cells[3], bool))
    assert isinstance(cells[4], str) and cells[4].endswith("s")  # the age, computed by the server
    obj = table["rows"][0]["object"]
    assert obj["kind"] == "PartialObjectMetadata" and obj["metadata"]["name"] == "dv1"
    vm_path = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"
    _, full = _table(running, dynamic_client, vm_path + "?includeObject=Object")
    assert full["rows"][0]["object"]["spec"]["runStrategy"] == "Always"
    _, bare = _table(running, dynamic_client, vm_path + "?includeObject=None&noHeaders=true")
    assert "object" not in bare["rows"][0] and bare["columnDefinitions"] is None
    _, beta = _table(running, dynamic_client, vm_path + "/vm1",
                     accept="application/json;as=Table;v=v1beta1;g=meta.k8s.io")
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1" and len(beta["rows"]) == 1
    assert beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    assert beta["metadata"]["resourceVersion"] == beta["rows"][0]["object"]["metadata"][
        "resourceVersion"]
    _, plain = _table(running, dynamic_client, vm_path, accept="application/json")
    assert plain["kind"] == "VirtualMachineList"
    with pytest.raises(ApiException) as err:
        _table(running, dynamic_client, vm_path + "?includeObject=Everything")
    assert err.value.status == 400
    assert json.loads(err.value.body or "{}")["message"] == \
        'unrecognized includeObject value: "Everything"'


def test_printer_column_types_as_the_crd_table_convertor() -> None:
    columns = ({"name": "Count", "type": "integer", "jsonPath": ".spec.count"},
               {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
               {"name": "On", "type": "boolean", "jsonPath": ".spec.on"},
               {"name": "When", "type": "date", "jsonPath": ".spec.when"},
               {"name": "Raw", "type": "string", "jsonPath": ".spec.raw", "priority": 1},
               {"name": "First", "type": "string", "jsonPath": ".spec.items[*].name"})
    kind = Kind("example.com", "v1", "Widget", "widgets", "widget", True,
                printer_columns=columns)
    req = printing.TableRequest("v1", "None")
    two_hours = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2, minutes=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    widget = {"metadata": {"name": "w"}, "spec": {
        "count": 2.9, "ratio": 3, "on": "yes", "when": two_hours, "raw": {"b": 1.5, "a": [1e6]},
        "items": [{"name": "x"}, {"name": "y"}]}}
    bad_date = {"metadata": {"name": "v"}, "spec": {"when": "yesterday", "on": True}}
    table = printing.table(req, kind, [widget, bad_date], {"resourceVersion": "9"})
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Count", "Ratio", "On", "When", "Raw", "First"]
    assert table["columnDefinitions"][1]["description"] == \
        "Custom resource definition column (in JSONPath format): .spec.count"
    assert table["columnDefinitions"][5]["priority"] == 1
    assert table["rows"][0]["cells"] == ["w", 2, 3.0, None, "125m", "map[a:[1e+06] b:1.5]", "x"]
    assert table["rows"][1]["cells"] == ["v", None, None, True, "<invalid>", None, None]
    assert table["metadata"] == {"resourceVersion": "9"}


def test_kubectl_get_watch_prints_rows_with_one_header(sim: SimulatedClusters,
                                                       tmp_path: Path) -> None:
    if not Path(KUBECTL).exists():
        pytest.skip("kubectl is not installed")
    cache = tmp_path / "kc-cache"
    store = sim.store("source")
    store.create("ConfigMap", {"metadata": {"name": "first", "namespace": "default"},
                               "data": {"a": "1"}})
    env = dict(os.environ, KUBECACHEDIR=str(cache), HOME=str(cache))
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(sim.kubeconfig_path), "--cache-dir",
                             str(cache), "get", "cm", "-w"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["NAME", "DATA", "AGE"]
        first = proc.stdout.readline().split()
        assert first[:2] in (["first", "1"], ["kube-root-ca.crt", "1"])
        time.sleep(0.5)
        store.create("ConfigMap", {"metadata": {"name": "second", "namespace": "default"},
                                   "data": {"a": "1", "b": "2"}})
        deadline = time.monotonic() + 10
        lines: list[list[str]] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline().split()
            lines.append(line)
            if line[:1] == ["second"]:
                break
        assert lines[-1][:2] == ["second", "2"]
        assert ["NAME", "DATA", "AGE"] not in lines  # the header is printed once
    finally:
        proc.kill()
        proc.wait(5)
