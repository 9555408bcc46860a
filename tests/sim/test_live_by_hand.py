"""A decentralized live migration done by hand with kubectl (kubevirt-lifecycle.md §8.2).

Each test is what an admin would type: read the KubeVirt CRs, exchange the CA bundles, create the
blank DataVolume and the receiver VM on the target, the target VMIM, then the source VMIM with the
target's synchronization address, and check the end states of §8.2 (success, an injected failure,
and a cancel by deleting the source VMIM).
"""
from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
NS = "shop"

# One VM, as the source runs it and as the target receives it (same template, §8.2 step 2).
VM = """
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: web
  namespace: shop
  annotations: %(annotations)s
spec:
  runStrategy: %(run_strategy)s
  template:
    spec:
      domain:
        memory: {guest: 1Gi}
        devices:
          interfaces: [{name: default, masquerade: {}}]
          disks: [{name: root, disk: {bus: virtio}}]
      networks: [{name: default, pod: {}}]
      volumes: [{name: root, dataVolume: {name: web-root}}]
"""
NAMESPACE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"""
SOURCE_DISK = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata: {name: web-root, namespace: shop}
spec:
  source: {blank: {}}
  storage: {accessModes: [ReadWriteMany], resources: {requests: {storage: 1Gi}}}
"""
TARGET_DISK = """
apiVersion: cdi.kubevirt.io/v1beta1
kind: DataVolume
metadata:
  name: web-root
  namespace: shop
  annotations:
    cdi.kubevirt.io/storage.bind.immediate.requested: "true"
    cdi.kubevirt.io/storage.deleteAfterCompletion: "false"
spec:
  source: {blank: {}}
  storage: {accessModes: [ReadWriteMany], resources: {requests: {storage: 1Gi}}}
"""
TARGET_VM = VM % {"annotations": json.dumps({"kubevirt.io/restore-run-strategy": "Always"}),
                  "run_strategy": "WaitAsReceiver"}
TARGET_VMIM = """
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstanceMigration
metadata: {name: web-target, namespace: shop}
spec:
  vmiName: web
  receive: {migrationID: mig-web}
"""
SOURCE_VMIM = """
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstanceMigration
metadata: {name: web-source, namespace: shop}
spec:
  vmiName: web
  sendTo: {migrationID: mig-web, connectURL: "%(url)s"}
"""


def jsonpath(kubectl: Kubectl, ctx: str, what: str, path: str) -> str:
    return kubectl("get", "-n", NS, *what.split(), "-o", f"jsonpath={path}", context=ctx).stdout


def wait(kubectl: Kubectl, ctx: str, what: str, condition: str, timeout: str = "30s") -> None:
    # kubectl wait answers NotFound at once for an object that does not exist yet (a controller
    # creates it a tick later, later still on a loaded machine): wait for it to exist first.
    if condition != "delete":
        kubectl("wait", "-n", NS, *what.split(), "--for=create", f"--timeout={timeout}",
                context=ctx, timeout=60)
    kubectl("wait", "-n", NS, *what.split(), f"--for={condition}", f"--timeout={timeout}",
            context=ctx, timeout=60)


def exchange_cas(kubectl: Kubectl) -> None:
    """Append each cluster's kubevirt-ca to the other's kubevirt-external-ca (§6.2)."""
    for here, there in (("source", "target"), ("target", "source")):
        ca = kubectl("get", "configmap", "-n", "kubevirt", "kubevirt-ca", "-o",
                     "jsonpath={.data.ca-bundle}", context=there).stdout
        kubectl("patch", "configmap", "-n", "kubevirt", "kubevirt-external-ca", "--type=merge",
                "-p", json.dumps({"data": {"ca-bundle": ca}}), context=here)
    for here, there in (("source", "target"), ("target", "source")):
        deadline = time.monotonic() + 10
        while kubectl("get", "configmap", "-n", "kubevirt", "kubevirt-external-ca", "-o",
                      "jsonpath={.data.ca-bundle}", context=here).stdout:
            assert time.monotonic() < deadline, "external CA bundle was not merged"
            time.sleep(0.1)
        assert "BEGIN CERTIFICATE" in kubectl("get", "configmap", "-n", "kubevirt", "kubevirt-ca",
                                              "-o", "jsonpath={.data.ca-bundle}",
                                              context=here).stdout


def migrate(kubectl: Kubectl, *, annotations: dict[str, str] | None = None) -> None:
    """Pre-flight and steps 1-4 of §8.2 (up to creating the source VMIM)."""
    for ctx in ("source", "target"):
        kv = json.loads(kubectl("get", "kubevirt", "-n", "kubevirt", "kubevirt", "-o", "json",
                                context=ctx).stdout)
        assert kv["status"]["phase"] == "Deployed" and kv["status"]["synchronizationAddresses"]
    exchange_cas(kubectl)
    kubectl("apply", "-f", "-", context="source",
            input=NAMESPACE + "---" + VM % {"annotations": json.dumps(annotations or {}),
                                              "run_strategy": "Always"} + "---" + SOURCE_DISK)
    wait(kubectl, "source", "vm/web", "jsonpath={.status.printableStatus}=Running")
    status = json.loads(kubectl("get", "-n", NS, "vm", "web", "-o", "json",
                                context="source").stdout)["status"]
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["StorageLiveMigratable"]["status"] == "True"
    assert conds["LiveMigratable"]["status"] == "True"
    kubectl("apply", "-f", "-", context="target", input=NAMESPACE + "---" + TARGET_DISK)
    wait(kubectl, "target", "dv/web-root", "jsonpath={.status.phase}=Succeeded")
    wait(kubectl, "target", "dv/web-root", "condition=Ready")
    kubectl("apply", "-f", "-", context="target", input=TARGET_VM)
    wait(kubectl, "target", "vmi/web", "jsonpath={.status.phase}=WaitingForSync")
    wait(kubectl, "target", "vm/web", "jsonpath={.status.printableStatus}=WaitingForReceiver")
    kubectl("apply", "-f", "-", context="target", input=TARGET_VMIM)
    wait(kubectl, "target", "vmim/web-target", "jsonpath={.status.phase}=WaitingForSync")
    url = jsonpath(kubectl, "target", "vmim web-target", "{.status.synchronizationAddresses[0]}")
    assert url.endswith(":9185")
    kubectl("apply", "-f", "-", context="source", input=SOURCE_VMIM % {"url": url})


def test_live_migration_by_hand(kubectl: Kubectl) -> None:
    migrate(kubectl)
    wait(kubectl, "target", "vmim/web-target", "jsonpath={.status.phase}=Succeeded")
    wait(kubectl, "target", "vm/web", "jsonpath={.spec.runStrategy}=Always")
    wait(kubectl, "target", "vm/web", "jsonpath={.status.printableStatus}=Running")
    wait(kubectl, "target", "vm/web", "jsonpath={.status.ready}=true")
    t_vmi = json.loads(kubectl("get", "-n", NS, "vmi", "web", "-o", "json",
                               context="target").stdout)
    assert t_vmi["status"]["phase"] == "Running"
    assert t_vmi["status"]["migrationState"]["completed"] is True
    assert t_vmi["status"]["migrationState"]["failed"] is False
    wait(kubectl, "source", "vm/web", "jsonpath={.spec.runStrategy}=Halted")
    wait(kubectl, "source", "vm/web", "jsonpath={.status.printableStatus}=Stopped")
    wait(kubectl, "source", "vmi/web", "delete")
    wait(kubectl, "source", "vmim/web-source", "delete")
    phases = jsonpath(kubectl, "target", "vmim web-target",
                      "{.status.phaseTransitionTimestamps[*].phase}").split()
    assert phases == ["WaitingForSync", "Pending", "Scheduling", "Scheduled", "PreparingTarget",
                      "TargetReady", "Running", "Succeeded"]


def test_injected_failure_at_running_keeps_the_source(kubectl: Kubectl) -> None:
    migrate(kubectl, annotations={"sim.smrun.io/fail-migration-at": "Running"})
    wait(kubectl, "source", "vmim/web-source", "jsonpath={.status.phase}=Failed")
    wait(kubectl, "target", "vmim/web-target", "jsonpath={.status.phase}=Failed")
    wait(kubectl, "target", "vm/web", "jsonpath={.status.printableStatus}=WaitingForReceiver")
    assert jsonpath(kubectl, "target", "vmi web", "{.status.phase}") == "WaitingForSync"
    assert jsonpath(kubectl, "target", "vm web", "{.spec.runStrategy}") == "WaitAsReceiver"
    assert jsonpath(kubectl, "source", "vmi web", "{.status.phase}") == "Running"
    wait(kubectl, "source", "vm/web", "jsonpath={.status.printableStatus}=Running")
    assert jsonpath(kubectl, "source", "vm web", "{.spec.runStrategy}") == "Always"


def test_deleting_the_source_vmim_cancels_both(kubectl: Kubectl) -> None:
    migrate(kubectl, annotations={"sim.smrun.io/hold-migration-at": "TargetReady"})
    wait(kubectl, "source", "vmim/web-source", "jsonpath={.status.phase}=TargetReady")
    kubectl("delete", "-n", NS, "vmim", "web-source", "--timeout=30s", context="source")
    wait(kubectl, "target", "vmim/web-target", "delete")
    proc = kubectl("get", "-n", NS, "vmim", "web-source", context="source", check=False)
    assert proc.returncode != 0 and "NotFound" in proc.stderr
    assert jsonpath(kubectl, "source", "vmi web", "{.status.phase}") == "Running"
    wait(kubectl, "target", "vmi/web", "jsonpath={.status.phase}=WaitingForSync")
    wait(kubectl, "target", "vm/web", "jsonpath={.status.printableStatus}=WaitingForReceiver")

