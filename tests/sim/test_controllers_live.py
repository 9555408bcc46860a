"""Decentralized live migration driven through the stores of two simulated clusters.

Covers kubevirt-lifecycle.md §1.4-1.8 and §8.1: phase orders on both VMIMs, the end states, the
injected failure (``sim.smrun.io/fail-migration-at``), cancel by deleting either VMIM, and the
``decentralizedMigrationBlocked`` condition when the peer cannot be reached.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.addresses import sync_address
from statemachine.sim.store import Store
from polling import record_values, wait_for

NS = "shop"
SOURCE_ORDER = ["Synchronizing", "Pending", "Scheduling", "Scheduled", "PreparingTarget",
                "TargetReady", "Running", "Succeeded"]
TARGET_ORDER = ["WaitingForSync", "Pending", "Scheduling", "Scheduled", "PreparingTarget",
                "TargetReady", "Running", "Succeeded"]
VM: dict[str, Any] = {
    "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
    "metadata": {"name": "web", "namespace": NS},
    "spec": {"runStrategy": "Always", "template": {"spec": {
        "domain": {"devices": {"interfaces": [{"name": "default", "masquerade": {}}]},
                   "memory": {"guest": "1Gi"}},
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora"}}],
    }}}}


def status(store: Store, kind: str, name: str) -> dict[str, Any]:
    return store.get(kind, NS, name).get("status") or {}


def exchange_cas(s: Store, t: Store) -> None:
    for a, b in ((s, t), (t, s)):
        ca = a.get("ConfigMap", "kubevirt", "kubevirt-ca")["data"]["ca-bundle"]
        b.patch("ConfigMap", "kubevirt", "kubevirt-external-ca", {"data": {"ca-bundle": ca}})


def prepare(sim: SimulatedClusters, *, fail_at: str | None = None,
            cas: bool = True) -> tuple[Store, Store]:
    """Source VM running, CAs exchanged, receiver VM waiting on the target."""
    s, t = sim.store("source"), sim.store("target")
    for store in (s, t):
        store.create("Namespace", {"metadata": {"name": NS}})
    source_vm = copy.deepcopy(VM)
    if fail_at:
        source_vm["metadata"]["annotations"] = {"sim.smrun.io/fail-migration-at": fail_at}
    s.create("VirtualMachine", source_vm)
    if cas:
        exchange_cas(s, t)
    target_vm = copy.deepcopy(VM)
    target_vm["spec"]["runStrategy"] = "WaitAsReceiver"
    target_vm["metadata"]["annotations"] = {"kubevirt.io/restore-run-strategy": "Always"}
    t.create("VirtualMachine", target_vm)
    wait_for(lambda: status(s, "VirtualMachine", "web")["printableStatus"] == "Running",
             what="source VM Running")
    wait_for(lambda: status(t, "VirtualMachine", "web")["printableStatus"] == "WaitingForReceiver",
             what="target VM WaitingForReceiver")
    return s, t


def start_migration(s: Store, t: Store, mid: str = "m1") -> str:
    t.create("VirtualMachineInstanceMigration", {
        "metadata": {"name": "web-target", "namespace": NS},
        "spec": {"vmiName": "web", "receive": {"migrationID": mid}}})
    address: str = wait_for(lambda: status(t, "VirtualMachineInstanceMigration", "web-target")
                            ["synchronizationAddresses"][0], what="target sync address")
    s.create("VirtualMachineInstanceMigration", {
        "metadata": {"name": "web-source", "namespace": NS},
        "spec": {"vmiName": "web", "sendTo": {"migrationID": mid, "connectURL": address}}})
    return address


@pytest.fixture
def clusters(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    return make_sim(tick=0.02)


def test_receiver_vmi_and_target_vmim_wait_for_sync(clusters: SimulatedClusters) -> None:
    s, t = prepare(clusters)
    vmi = t.get("VirtualMachineInstance", NS, "web")
    assert vmi["metadata"]["annotations"]["kubevirt.io/create-migration-target"] == "true"
    assert vmi["status"]["phase"] == "WaitingForSync"
    ready = next(c for c in vmi["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodNotExists")
    t.create("VirtualMachineInstanceMigration", {
        "metadata": {"name": "web-target", "namespace": NS},
        "spec": {"vmiName": "web", "receive": {"migrationID": "m1"}}})
    st = wait_for(lambda: (x := status(t, "VirtualMachineInstanceMigration", "web-target"))
                  .get("phase") == "WaitingForSync" and x)
    assert st["synchronizationAddresses"] == [sync_address("target")]
    blocked = next(c for c in st["conditions"] if c["type"] == "decentralizedMigrationBlocked")
    assert blocked["message"] == "waiting for incoming synchronization, unable to proceed"
    vmim = t.get("VirtualMachineInstanceMigration", NS, "web-target")
    assert vmim["metadata"]["labels"]["kubevirt.io/vmi-name"] == "web"
    assert "kubevirt.io/migrationJobFinalize" in vmim["metadata"]["finalizers"]


def test_successful_migration_end_states(clusters: SimulatedClusters) -> None:
    s, t = prepare(clusters)
    start_migration(s, t)
    wait_for(lambda: status(t, "VirtualMachineInstanceMigration", "web-target")
             .get("phase") == "Succeeded", what="target VMIM Succeeded")
    target = status(t, "VirtualMachineInstanceMigration", "web-target")
    assert [p["phase"] for p in target["phaseTransitionTimestamps"]] == TARGET_ORDER
    wait_for(lambda: t.get("VirtualMachine", NS, "web")["spec"]["runStrategy"] == "Always")
    wait_for(lambda: status(t, "VirtualMachine", "web")["printableStatus"] == "Running")
    assert status(t, "VirtualMachine", "web")["ready"] is True
    t_vmi = t.get("VirtualMachineInstance", NS, "web")
    state = t_vmi["status"]["migrationState"]
    assert t_vmi["status"]["phase"] == "Running"
    assert state["completed"] is True and state["failed"] is False
    assert state["migrationUid"] == t.get("VirtualMachineInstanceMigration", NS,
                                          "web-target")["metadata"]["uid"]
    assert state["targetNode"] == t_vmi["status"]["nodeName"]
    assert "kubevirt.io/create-migration-target" not in t_vmi["metadata"].get("annotations", {})
    # the target pod became the VMI's pod (kubevirt-fidelity.md §4.5)
    pod = t.get("Pod", NS, "virt-launcher-web-tar02")
    assert pod["metadata"]["labels"]["kubevirt.io/migrationJobUID"] == state["migrationUid"]
    assert pod["status"]["phase"] == "Running" and pod["spec"]["nodeName"] == "target-node02"
    assert t_vmi["status"]["activePods"] == {pod["metadata"]["uid"]: "target-node02"}
    on_vmi = {e["reason"] for e in t.list("Event", NS, field_selector="involvedObject.name=web,"
                                          "involvedObject.kind=VirtualMachineInstance")}
    assert {"PreparingTarget", "Migrated"} <= on_vmi
    on_vmim = {e["reason"] for e in t.list("Event", NS,
                                           field_selector="involvedObject.name=web-target")}
    assert {"SuccessfulCreate", "SuccessfulHandOver", "SuccessfulMigration"} <= on_vmim
    # source: VM halted, VMI and VMIM gone
    wait_for(lambda: s.get("VirtualMachine", NS, "web")["spec"]["runStrategy"] == "Halted")
    wait_for(lambda: s.try_get("VirtualMachineInstance", NS, "web") is None, what="S-VMI gone")
    wait_for(lambda: s.try_get("VirtualMachineInstanceMigration", NS, "web-source") is None,
             what="S-VMIM gone")
    wait_for(lambda: status(s, "VirtualMachine", "web")["printableStatus"] == "Stopped")
    assert s.list("Pod", NS) == []  # the source pod went with its VMI
    assert t.get("VirtualMachine", NS, "web")["metadata"]["annotations"][
        "kubevirt.io/restore-run-strategy"] == "Always"


def test_source_vmim_walks_the_source_order(clusters: SimulatedClusters) -> None:
    s, t = prepare(clusters)
    # Every version the store commits, not polls: under load the controller can move the VMIM
    # through its last phases and delete it between two polls.
    versions = record_values(s, "VirtualMachineInstanceMigration", NS, "web-source",
                             lambda vmim: vmim.get("status") or {})
    start_migration(s, t)

    def done() -> bool:
        gone = versions and s.try_get("VirtualMachineInstanceMigration", NS, "web-source") is None
        return bool(gone) or any(st.get("phase") == "Succeeded" for st in versions)
    wait_for(done, what="source VMIM Succeeded or gone")
    last = versions[-1]
    seen = [p["phase"] for p in last.get("phaseTransitionTimestamps", [])]
    why = (last.get("migrationState") or {}).get("failureReason")
    assert seen == SOURCE_ORDER[:len(seen)] and len(seen) >= 7, (seen, why)


def test_injected_failure_at_running(clusters: SimulatedClusters) -> None:
    s, t = prepare(clusters, fail_at="Running")
    start_migration(s, t)
    wait_for(lambda: status(s, "VirtualMachineInstanceMigration", "web-source")
             .get("phase") == "Failed", what="source VMIM Failed")
    wait_for(lambda: status(t, "VirtualMachineInstanceMigration", "web-target")
             .get("phase") == "Failed", what="target VMIM Failed")
    source = status(s, "VirtualMachineInstanceMigration", "web-source")
    assert [p["phase"] for p in source["phaseTransitionTimestamps"]][-2:] == ["Running", "Failed"]
    assert "Running" in source["migrationState"]["failureReason"]
    wait_for(lambda: status(t, "VirtualMachine", "web")["printableStatus"] == "WaitingForReceiver")
    assert status(t, "VirtualMachineInstance", "web")["phase"] == "WaitingForSync"
    assert t.get("VirtualMachine", NS, "web")["spec"]["runStrategy"] == "WaitAsReceiver"
    assert status(s, "VirtualMachineInstance", "web")["phase"] == "Running"
    wait_for(lambda: status(s, "VirtualMachine", "web")["printableStatus"] == "Running")
    assert s.get("VirtualMachine", NS, "web")["spec"]["runStrategy"] == "Always"


@pytest.mark.parametrize("delete_side", ["source", "target"])
def test_deleting_either_vmim_cancels_both(clusters: SimulatedClusters, delete_side: str) -> None:
    s, t = prepare(clusters)
    s.patch("VirtualMachine", NS, "web",  # pause both sides mid-migration, then cancel
            {"metadata": {"annotations": {"sim.smrun.io/hold-migration-at": "TargetReady"}}})
    start_migration(s, t)
    wait_for(lambda: status(s, "VirtualMachineInstanceMigration", "web-source")
             .get("phase") == "TargetReady", what="migration under way")
    assert status(t, "VirtualMachineInstanceMigration", "web-target")["phase"] in (
        "PreparingTarget", "TargetReady")
    if delete_side == "source":
        s.delete("VirtualMachineInstanceMigration", NS, "web-source")
    else:
        t.delete("VirtualMachineInstanceMigration", NS, "web-target")
    wait_for(lambda: s.try_get("VirtualMachineInstanceMigration", NS, "web-source") is None
             and t.try_get("VirtualMachineInstanceMigration", NS, "web-target") is None,
             what="both VMIMs gone")
    assert status(s, "VirtualMachineInstance", "web")["phase"] == "Running"
    assert s.get("VirtualMachine", NS, "web")["spec"]["runStrategy"] == "Always"
    wait_for(lambda: status(t, "VirtualMachineInstance", "web")["phase"] == "WaitingForSync")
    wait_for(lambda: status(t, "VirtualMachine", "web")["printableStatus"] == "WaitingForReceiver")


def test_source_without_target_vmim_is_blocked_not_failed(clusters: SimulatedClusters) -> None:
    s, t = prepare(clusters)
    s.create("VirtualMachineInstanceMigration", {
        "metadata": {"name": "web-source", "namespace": NS},
        "spec": {"vmiName": "web",
                 "sendTo": {"migrationID": "nobody", "connectURL": sync_address("target")}}})
    cond = wait_for(lambda: next(c for c in status(s, "VirtualMachineInstanceMigration",
                                                   "web-source")["conditions"]
                                 if c["type"] == "decentralizedMigrationBlocked"))
    assert "source: unable to locate VMI for migrationID nobody" in cond["message"]
    time.sleep(0.2)
    assert status(s, "VirtualMachineInstanceMigration", "web-source")["phase"] == "Synchronizing"
    vm_conds = {c["type"] for c in status(s, "VirtualMachine", "web")["conditions"]}
    assert "DecentralizedLiveMigrationFailure" in vm_conds


def test_missing_ca_exchange_blocks_with_x509(clusters: SimulatedClusters) -> None:
    s, t = prepare(clusters, cas=False)
    start_migration(s, t)
    cond = wait_for(lambda: next(c for c in status(s, "VirtualMachineInstanceMigration",
                                                   "web-source")["conditions"]
                                 if c["type"] == "decentralizedMigrationBlocked"))
    assert "x509" in cond["message"]
    exchange_cas(s, t)
    wait_for(lambda: status(t, "VirtualMachineInstanceMigration", "web-target")
             .get("phase") == "Succeeded", what="migration succeeds after the CA exchange")


def test_unreachable_connect_url_is_blocked(clusters: SimulatedClusters) -> None:
    s, _ = prepare(clusters)
    s.create("VirtualMachineInstanceMigration", {
        "metadata": {"name": "web-source", "namespace": NS},
        "spec": {"vmiName": "web", "sendTo": {"migrationID": "m", "connectURL": "10.9.9.9:9185"}}})
    cond = wait_for(lambda: next(c for c in status(s, "VirtualMachineInstanceMigration",
                                                   "web-source")["conditions"]
                                 if c["type"] == "decentralizedMigrationBlocked"))
    assert "connection refused" in cond["message"]
