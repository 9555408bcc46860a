"""Jobs, incremental pull backups with a tracker, VM run strategies and the KubeVirt CR/CA
behaviour of the simulated controllers, driven through the stores."""
from __future__ import annotations

import json
from typing import Any

from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim import addresses
from statemachine.sim.store import Store
from polling import record_values, wait_for

NS = "shop"


def cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in (obj.get("status") or {}).get("conditions") or []
                if c["type"] == ctype)


def job(name: str, *, annotations: dict[str, str] | None = None,
        env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
            "spec": {"backoffLimit": 2, "template": {"spec": {"restartPolicy": "Never",
                     "containers": [{"name": "copy", "image": "python:3-slim", "env": env or []}]}}}}


def test_job_completes_after_a_tick_with_a_pod(shop_clusters: SimulatedClusters) -> None:
    t = shop_clusters.store("target")
    t.create("Job", job("ok", annotations={"sim.smrun.io/termination-message": "done"}))
    done = wait_for(lambda: (j := t.get("Job", NS, "ok"))["status"].get("succeeded") == 1 and j)
    assert cond(done, "Complete")["status"] == "True"
    assert done["status"]["completionTime"]
    pods = t.list("Pod", NS, label_selector="job-name=ok")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Succeeded"
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (0, "done")


def test_job_fail_annotation(shop_clusters: SimulatedClusters) -> None:
    t = shop_clusters.store("target")
    t.create("Job", job("bad", annotations={"sim.smrun.io/fail": "true"}))
    failed = wait_for(lambda: (j := t.get("Job", NS, "bad"))["status"].get("failed") == 1 and j)
    assert (cond(failed, "Failed")["status"], cond(failed, "Failed")["reason"]) == (
        "True", "BackoffLimitExceeded")
    assert not any(c["type"] == "Complete" for c in failed["status"]["conditions"])


def running_vm_with_disk(s: Store, size: str = "8Gi") -> None:
    s.create("PersistentVolumeClaim", {"metadata": {"name": "vm1-root", "namespace": NS}, "spec": {
        "accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}}})
    s.create("PersistentVolumeClaim", {"metadata": {"name": "scratch", "namespace": NS}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}})
    s.create("VirtualMachine", {"metadata": {"name": "vm1", "namespace": NS}, "spec": {
        "runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "1Gi"}}, "volumes": [
            {"name": "root", "persistentVolumeClaim": {"claimName": "vm1-root"}}]}}}})
    s.create("VirtualMachineBackupTracker", {"metadata": {"name": "vm1-mig", "namespace": NS},
                                             "spec": {"source": {"apiGroup": "kubevirt.io",
                                                                 "kind": "VirtualMachine",
                                                                 "name": "vm1"}}})
    wait_for(lambda: s.get("VirtualMachineInstance", NS, "vm1")["status"]["phase"] == "Running")


def backup(name: str, *, full: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS}, "spec": {
        "source": {"apiGroup": "backup.kubevirt.io", "kind": "VirtualMachineBackupTracker",
                   "name": "vm1-mig"},
        "mode": "Pull", "pvcName": "scratch", "tokenSecretRef": "vm1-mig-token",
        "skipQuiesce": True, "forceFullBackup": full, "ttlDuration": "2h"}}


def pull_round(s: Store, t: Store, name: str, *, full: bool = False) -> tuple[str, dict[str, Any]]:
    """One precopy round: backup until ExportReady, a copy Job on the target, delete the backup."""
    s.create("VirtualMachineBackup", backup(name, full=full))
    ready = wait_for(lambda: (b := s.get("VirtualMachineBackup", NS, name))
                     and cond(b, "Progressing")["reason"] == "ExportReady" and b,
                     what=f"{name} ExportReady")
    volume = ready["status"]["includedVolumes"][0]
    assert volume["volumeName"] == "root"
    assert volume["dataEndpoint"].startswith(f"https://{addresses.export_host('source')}/")
    assert volume["mapEndpoint"].endswith("/exports/root/map")
    assert ready["status"]["endpointCert"].startswith("-----BEGIN CERTIFICATE-----")
    t.create("Job", job(f"copy-{name}", env=[{"name": "MAP_URL", "value": volume["mapEndpoint"]}]))
    copied = wait_for(lambda: (j := t.get("Job", NS, f"copy-{name}"))["status"].get(
        "succeeded") == 1 and j)
    pod = t.list("Pod", NS, label_selector=f"job-name=copy-{name}")[0]
    message = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert copied["metadata"]["annotations"]["sim.smrun.io/termination-message-out"]
    assert message["type"] == ready["status"]["type"]
    s.delete("VirtualMachineBackup", NS, name)
    wait_for(lambda: s.try_get("VirtualMachineBackup", NS, name) is None, what=f"{name} gone")
    tracker = s.get("VirtualMachineBackupTracker", NS, "vm1-mig")
    assert tracker["status"]["latestCheckpoint"]["name"] == ready["status"]["checkpointName"]
    assert s.try_get("VirtualMachineExport", NS, name) is None
    return str(ready["status"]["type"]), message


def test_pull_backup_rounds_shrink_and_advance_the_tracker(shop_clusters: SimulatedClusters) -> None:
    s, t = shop_clusters.store("source"), shop_clusters.store("target")
    running_vm_with_disk(s)
    assert "status" not in s.get("VirtualMachineBackupTracker", NS, "vm1-mig")
    kinds, dirty = [], []
    for i in range(3):
        kind, message = pull_round(s, t, f"vm1-mig-{i}", full=i == 0)
        kinds.append(kind)
        dirty.append(message["dirtyBytes"])
    assert kinds == ["Full", "Incremental", "Incremental"]
    assert dirty[0] == 8 << 30
    assert dirty[0] > dirty[1] > dirty[2] > 0
    # a copy Job for a round whose backup is already gone fails, as the real copier would
    t.create("Job", job("late", env=[{"name": "MAP_URL", "value": (
        f"https://{addresses.export_host('source')}/api/export.kubevirt.io/v1/namespaces/{NS}/"
        "virtualmachineexports/vm1-mig-0/exports/root/map")}]))
    late = wait_for(lambda: (j := t.get("Job", NS, "late"))["status"].get("failed") == 1 and j)
    assert cond(late, "Failed")["status"] == "True"


def test_cbt_state_follows_the_kubevirt_selectors(shop_clusters: SimulatedClusters) -> None:
    s = shop_clusters.store("source")
    s.patch("KubeVirt", "kubevirt", "kubevirt", {"spec": {"configuration": {
        "changedBlockTrackingLabelSelectors": {
            "virtualMachineLabelSelector": {"matchLabels": {"cbt": "on"}}}}}})
    running_vm_with_disk(s)
    s.patch("VirtualMachine", NS, "vm1", {"metadata": {"labels": {"cbt": "on"}}})
    wait_for(lambda: s.get("VirtualMachine", NS, "vm1")["status"]["changedBlockTracking"][
        "state"] == "Enabled")


def test_backup_waits_for_a_running_vm(shop_clusters: SimulatedClusters) -> None:
    s = shop_clusters.store("source")
    s.create("VirtualMachineBackupTracker", {"metadata": {"name": "vm1-mig", "namespace": NS},
                                             "spec": {"source": {"apiGroup": "kubevirt.io",
                                                                 "kind": "VirtualMachine",
                                                                 "name": "vm1"}}})
    s.create("VirtualMachineBackup", backup("early"))
    progressing = wait_for(lambda: cond(s.get("VirtualMachineBackup", NS, "early"), "Progressing"))
    assert progressing["reason"] == "Initializing"
    assert "doesnt exist" in progressing["message"]


def test_vm_halted_stops_and_removes_the_vmi(shop_clusters: SimulatedClusters) -> None:
    s = shop_clusters.store("source")
    # Every phase the store commits, not polls (a poll can miss one that lasts a single tick).
    recorded = record_values(s, "VirtualMachineInstance", NS, "vm2",
                             lambda vmi: str((vmi.get("status") or {}).get("phase", "")))
    s.create("VirtualMachine", {"metadata": {"name": "vm2", "namespace": NS}, "spec": {
        "runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "1Gi"}}}}}})
    wait_for(lambda: "Running" in recorded, what="VMI Running")
    phases = [p for p in recorded[:recorded.index("Running") + 1] if p]
    assert phases == ["Pending", "Scheduling", "Scheduled", "Running"][-len(phases):]
    wait_for(lambda: s.get("VirtualMachine", NS, "vm2")["status"]["ready"] is True)
    s.patch("VirtualMachine", NS, "vm2", {"spec": {"runStrategy": "Halted"}})
    wait_for(lambda: s.try_get("VirtualMachineInstance", NS, "vm2") is None, what="VMI gone")
    assert "changedBlockTracking" not in s.get("VirtualMachine", NS, "vm2")["status"]
    wait_for(lambda: s.get("VirtualMachine", NS, "vm2")["status"]["printableStatus"] == "Stopped")


def test_kubevirt_cr_and_ca_merge(shop_clusters: SimulatedClusters) -> None:
    s, t = shop_clusters.store("source"), shop_clusters.store("target")
    kv = s.get("KubeVirt", "kubevirt", "kubevirt")
    assert kv["status"]["synchronizationAddresses"] == [addresses.sync_address("source")]
    assert kv["status"]["phase"] == "Deployed"
    target_ca = t.get("ConfigMap", "kubevirt", "kubevirt-ca")["data"]["ca-bundle"]
    s.patch("ConfigMap", "kubevirt", "kubevirt-external-ca", {"data": {"ca-bundle": target_ca}})
    wait_for(lambda: s.get("ConfigMap", "kubevirt", "kubevirt-external-ca")["data"][
        "ca-bundle"] == "")
    bundle = s.get("ConfigMap", "kubevirt", "kubevirt-ca")["data"]["ca-bundle"]
    assert addresses.pem_blocks(bundle) == [addresses.ca_pem("source"), addresses.ca_pem("target")]
    s.patch("ConfigMap", "kubevirt", "kubevirt-external-ca", {"data": {"ca-bundle": target_ca}})
    wait_for(lambda: s.get("ConfigMap", "kubevirt", "kubevirt-external-ca")["data"][
        "ca-bundle"] == "")
    assert s.get("ConfigMap", "kubevirt", "kubevirt-ca")["data"]["ca-bundle"] == bundle
