"""KubeVirt's ``subresources.kubevirt.io`` API (kubevirt-fidelity.md §2; issue 18 item 10):
discovery, start/stop/restart/migrate per run strategy, pause/unpause, codes and error bodies,
through kubectl (``get --raw``/``replace --raw`` send GET/PUT) and the ``kubernetes`` client."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from polling import wait_for

NS = "default"
BASE = f"/apis/subresources.kubevirt.io/v1/namespaces/{NS}"


def vm(name: str, run_strategy: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"runStrategy": run_strategy, "template": {"spec": {"domain": {
                "devices": {}, "memory": {"guest": "1Gi"}}}}}}


def put(sim: SimulatedClusters, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """PUT through the ``kubernetes`` client's ApiClient: (status, parsed body or None)."""
    from kubernetes import config
    api = config.new_client_from_config(config_file=str(sim.kubeconfig_path), context="source")
    method, url, headers, data, _ = api.param_serialize(
        "PUT", path, header_params={"Content-Type": "application/json",
                                    "Accept": "application/json"},
        body=body or {}, auth_settings=["BearerToken"])
    resp = api.call_api(method, url, header_params=headers, body=data)
    raw = resp.read()
    return resp.status, json.loads(raw) if raw else None


def vmi_of(sim: SimulatedClusters, name: str) -> dict[str, Any] | None:
    return sim.store("source").try_get("VirtualMachineInstance", NS, name)


def running(sim: SimulatedClusters, name: str) -> dict[str, Any]:
    return wait_for(lambda: vmi_of(sim, name) if (vmi_of(sim, name) or {}).get(
        "status", {}).get("phase") == "Running" else None)


def test_discovery_lists_the_subresources(sim: SimulatedClusters,
                                          kubectl: Callable[..., Any]) -> None:
    group = json.loads(kubectl("get", "--raw", "/apis/subresources.kubevirt.io").stdout)
    assert [v["version"] for v in group["versions"]] == ["v1", "v1alpha3"]
    listed = json.loads(kubectl("get", "--raw", "/apis/subresources.kubevirt.io/v1").stdout)
    assert listed["kind"] == "APIResourceList"
    assert listed["groupVersion"] == "subresources.kubevirt.io/v1"
    names = [r["name"] for r in listed["resources"]]
    for name in ("virtualmachines/start", "virtualmachines/stop", "virtualmachines/restart",
                 "virtualmachines/migrate", "virtualmachineinstances/pause",
                 "virtualmachineinstances/unpause"):
        assert name in names
    assert all(r["namespaced"] and r["kind"] == "" for r in listed["resources"])
    apis = json.loads(kubectl("get", "--raw", "/apis").stdout)
    assert "subresources.kubevirt.io" in [g["name"] for g in apis["groups"]]
    kubectl("api-resources")  # discovery with the aggregated group does not break kubectl


def test_stop_and_start_an_always_vm(sim: SimulatedClusters, kubectl: Callable[..., Any],
                                     tmp_path: Path) -> None:
    s = sim.store("source")
    s.create("VirtualMachine", vm("web", "Always"))
    first = running(sim, "web")
    code, body = put(sim, f"{BASE}/virtualmachines/web/start")
    assert code == 409
    assert body["message"] == ('Operation cannot be fulfilled on virtualmachine.kubevirt.io '
                               '"web": VM is already running')
    assert body["details"] == {"name": "web", "group": "kubevirt.io", "kind": "virtualmachine"}
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    kubectl("replace", "--raw", f"{BASE}/virtualmachines/web/stop", "-f", str(empty))
    assert s.get("VirtualMachine", NS, "web")["spec"]["runStrategy"] == "Halted"
    wait_for(lambda: vmi_of(sim, "web") is None)
    code, body = put(sim, f"{BASE}/virtualmachines/web/restart")
    assert (code, body["message"]) == (409, 'Operation cannot be fulfilled on '
                                             'virtualmachine.kubevirt.io "web": RunStategy Halted '
                                             'does not support manual restart requests')
    assert put(sim, f"{BASE}/virtualmachines/web/start") == (202, None)
    assert s.get("VirtualMachine", NS, "web")["spec"]["runStrategy"] == "Always"
    second = running(sim, "web")
    assert second["metadata"]["uid"] != first["metadata"]["uid"]


def test_restart_makes_a_new_vmi(sim: SimulatedClusters) -> None:
    sim.store("source").create("VirtualMachine", vm("web", "Always"))
    first = running(sim, "web")
    code, body = put(sim, f"{BASE}/virtualmachines/web/restart", {"gracePeriodSeconds": 5})
    assert (code, body["reason"], body["message"]) == (
        400, "BadRequest", "For force restart, only gracePeriod=0 is supported for now")
    assert put(sim, f"{BASE}/virtualmachines/web/restart") == (202, None)
    requests = sim.store("source").get("VirtualMachine", NS, "web")["status"].get(
        "stateChangeRequests")
    assert requests is None or requests[0] == {"action": "Stop", "uid": first["metadata"]["uid"]}
    second = wait_for(lambda: (vmi := vmi_of(sim, "web")) and vmi["metadata"]["uid"] != first[
        "metadata"]["uid"] and vmi.get("status", {}).get("phase") == "Running" and vmi)
    assert second["metadata"]["name"] == "web"
    wait_for(lambda: "stateChangeRequests" not in sim.store("source").get(
        "VirtualMachine", NS, "web")["status"])


def test_manual_vm_is_started_and_stopped_by_requests(sim: SimulatedClusters) -> None:
    s = sim.store("source")
    s.create("VirtualMachine", vm("man", "Manual"))
    code, body = put(sim, f"{BASE}/virtualmachines/man/stop")
    assert (code, body["message"].rsplit(": ", 1)[-1]) == (409, "VM is not running")
    assert put(sim, f"{BASE}/virtualmachines/man/start") == (202, None)
    vmi = running(sim, "man")
    assert s.get("VirtualMachine", NS, "man")["spec"]["runStrategy"] == "Manual"
    assert put(sim, f"{BASE}/virtualmachines/man/stop") == (202, None)
    wait_for(lambda: vmi_of(sim, "man") is None)
    events = s.list("Event", NS, field_selector="involvedObject.name=man,"
                                                "involvedObject.kind=VirtualMachine")
    assert (f"Stopped the virtual machine by deleting the virtual machine instance "
            f"{vmi['metadata']['uid']}") in [e["message"] for e in events]


def test_migrate_creates_a_migration(sim: SimulatedClusters) -> None:
    s = sim.store("source")
    s.create("VirtualMachine", vm("web", "Always"))
    code, body = put(sim, f"{BASE}/virtualmachines/ghost/migrate")
    assert (code, body["reason"], body["message"]) == (
        404, "NotFound", 'virtualmachine.kubevirt.io "ghost" not found')
    running(sim, "web")
    assert put(sim, f"{BASE}/virtualmachines/web/migrate", {"dryRun": ["All"]}) == (202, None)
    assert s.list("VirtualMachineInstanceMigration", NS) == []
    assert put(sim, f"{BASE}/virtualmachines/web/migrate") == (202, None)
    (mig,) = s.list("VirtualMachineInstanceMigration", NS)
    assert mig["metadata"]["name"].startswith("kubevirt-migrate-vm-")
    assert mig["spec"] == {"vmiName": "web"}
    code, body = put(sim, f"{BASE}/virtualmachines/web/migrate")
    assert (code, body["reason"]) == (500, "InternalError")
    assert body["message"].startswith('Internal error occurred: admission webhook '
                                      '"migration-create-validator.kubevirt.io" denied the '
                                      "request: in-flight migration detected.")


@pytest.mark.parametrize("version", ["v1", "v1alpha3"])
def test_pause_and_unpause(sim: SimulatedClusters, kubectl: Callable[..., Any],
                           version: str) -> None:
    base = f"/apis/subresources.kubevirt.io/{version}/namespaces/{NS}/virtualmachineinstances"
    sim.store("source").create("VirtualMachine", vm("web", "Always"))
    code, body = put(sim, f"{base}/web/unpause")
    assert code in (404, 409)
    running(sim, "web")
    code, body = put(sim, f"{base}/web/unpause")
    assert (code, body["message"]) == (409, 'Operation cannot be fulfilled on '
                                             'virtualmachineinstance.kubevirt.io "web": VMI is not '
                                             'paused')
    assert put(sim, f"{base}/web/pause", {"dryRun": ["All"]}) == (200, None)
    assert not [c for c in vmi_of(sim, "web")["status"]["conditions"] if c["type"] == "Paused"]
    assert put(sim, f"{base}/web/pause") == (200, None)
    paused = [c for c in vmi_of(sim, "web")["status"]["conditions"] if c["type"] == "Paused"]
    assert paused and paused[0]["status"] == "True"
    wait_for(lambda: sim.store("source").get("VirtualMachine", NS, "web")["status"][
        "printableStatus"] == "Paused")
    code, body = put(sim, f"{base}/web/pause")
    assert (code, body["message"].rsplit(": ", 1)[-1]) == (409, "VMI is already paused")
    assert put(sim, f"{base}/web/unpause") == (200, None)
    assert not [c for c in vmi_of(sim, "web")["status"]["conditions"] if c["type"] == "Paused"]
    listed = kubectl("events", "--for", "vmi/web").stdout
    assert "VirtualMachineInstance paused" in listed and "VirtualMachineInstance unpaused" in listed
