"""A VMI's status beyond phase and conditions, as clients read it (kubevirt-fidelity.md §7.1).

- ``kubectl get vmi -o wide``'s IP column is each VMI's own launcher pod IP (it was one fixed
  address for every VMI);
- the interfaces and volumes through the phases: ``{name, podInterfaceName: eth0}`` and claim info
  without targets at ``Scheduled``, the domain's interfaces with the pod IP and disk targets once
  ``Running``; after a local or a decentralized migration, the target pod's IP and the same MAC;
- the fields the VMI mutating webhook sets on create (``runtimeUser``, ``guestOSInfo``,
  ``memory``, ``currentCPUTopology``), also on a dry run, and the VM controller's
  ``virtualMachineRevisionName``; an instancetype's CPU and memory on the VMI a VM starts;
- the handler's ``migrationMethod``, ``selinuxContext``, ``machine``, the controller's
  ``qosClass`` and ``launcherContainerImageVersion``, and the same fields on a seeded running VMI;
- ``phaseTransitionTimestamps``: every phase a VMI enters, once.
"""
from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from tests.conftest import KUBECTL, run_kubectl
from polling import record_values, wait_for

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
NS = "default"
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@pytest.fixture
def kubectl_for(tmp_path: Path) -> Callable[[SimulatedClusters], Kubectl]:
    """kubectl against a simulator the test starts itself (e.g. with a seed)."""
    if not Path(KUBECTL).exists():
        pytest.skip("kubectl is not installed (.ci/run installs it)")

    def bind(sim: SimulatedClusters) -> Kubectl:
        cache = tmp_path / "kubectl-cache-own"
        cache.mkdir(exist_ok=True)

        def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
            return run_kubectl(sim, cache, *args, **kw)
        return run
    return bind


def running_vmi(name: str) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"domain": {"memory": {"guest": "1Gi"},
                                "devices": {"interfaces": [{"name": "default",
                                                            "masquerade": {}}]}},
                     "networks": [{"name": "default", "pod": {}}]},
            "status": {"phase": "Running", "nodeName": "source-node01"}}


def get_json(kubectl: Kubectl, *what: str, context: str = "source") -> dict[str, Any]:
    out: dict[str, Any] = json.loads(kubectl("get", "-n", NS, *what, "-o", "json",
                                             context=context).stdout)
    return out


def test_kubectl_wide_shows_each_vmis_launcher_pod_ip(make_sim: Callable[..., SimulatedClusters],
                                                      kubectl_for: Callable[..., Kubectl]) -> None:
    seed = {"source": [running_vmi(n) for n in ("vm-a", "vm-b", "vm-c")], "target": []}
    sim = make_sim(seed=seed)
    kubectl = kubectl_for(sim)
    wait_for(lambda: all(len(v["status"].get("activePods") or {}) == 1 and
                         v["status"].get("interfaces")
                         for v in sim.store("source").list("VirtualMachineInstance", NS)),
             what="seeded VMIs with pods and interfaces")
    pod_ips = {}
    for line in kubectl("get", "pods", "-n", NS, "-o", "wide", "--no-headers").stdout.splitlines():
        name, ip = line.split()[0], line.split()[5]
        pod_ips[name.removeprefix("virt-launcher-").rsplit("-", 1)[0]] = ip
    vmi_ips = {}
    for line in kubectl("get", "vmi", "-n", NS, "-o", "wide", "--no-headers").stdout.splitlines():
        vmi_ips[line.split()[0]] = line.split()[3]
    assert vmi_ips == pod_ips and set(vmi_ips) == {"vm-a", "vm-b", "vm-c"}
    assert len(set(vmi_ips.values())) == 3
    for name in vmi_ips:
        status = get_json(kubectl, "vmi", name)["status"]
        (iface,) = status["interfaces"]
        assert iface["ipAddress"] == vmi_ips[name] and iface["ipAddresses"] == [vmi_ips[name]]
        assert (iface["name"], iface["podInterfaceName"], iface["infoSource"],
                iface["queueCount"], iface["linkState"]) == ("default", "eth0", "domain", 1, "up")
        assert MAC.match(iface["mac"]) and int(iface["mac"][:2], 16) & 0b11 == 0b10
        # a seeded VMI never went through the mutator or Scheduled: filled in once running
        assert status["runtimeUser"] == 107 and status["guestOSInfo"] == {}
        assert status["memory"] == {"guestAtBoot": "1Gi", "guestCurrent": "1Gi",
                                    "guestRequested": "1Gi"}
        assert status["currentCPUTopology"] == {"sockets": 1, "cores": 1, "threads": 1}
        assert status["qosClass"] == "Burstable"
        assert status["migrationMethod"] == "LiveMigration"  # no volumes at all
    macs = {get_json(kubectl, "vmi", n)["status"]["interfaces"][0]["mac"] for n in vmi_ips}
    assert len(macs) == 3


VM = {
    "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
    "metadata": {"name": "vm1", "namespace": NS},
    "spec": {"runStrategy": "Always", "template": {"spec": {
        "domain": {"memory": {"guest": "2Gi"}, "cpu": {"sockets": 2, "cores": 1, "threads": 1},
                   "devices": {"disks": [{"name": "root", "disk": {"bus": "virtio"}},
                                         {"name": "cd", "cdrom": {}},
                                         {"name": "cloudinit", "disk": {}}],
                               "interfaces": [{"name": "default", "masquerade": {}}]}},
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "root", "dataVolume": {"name": "vm1-root"}},
                    {"name": "cd", "containerDisk": {"image": "quay.io/containerdisks/fedora"}},
                    {"name": "cloudinit", "cloudInitNoCloud": {"userData": "#cloud-config"}}]}}}}
DV = {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
      "metadata": {"name": "vm1-root", "namespace": NS},
      "spec": {"source": {"blank": {}},
               "storage": {"accessModes": ["ReadWriteMany"],
                           "resources": {"requests": {"storage": "1Gi"}}}}}


def _status_view(obj: dict[str, Any]) -> str:
    st = obj.get("status") or {}
    return json.dumps({k: st.get(k) for k in ("phase", "interfaces", "volumeStatus", "qosClass",
                                              "launcherContainerImageVersion", "nodeName",
                                              "migrationMethod")}, sort_keys=True)


def test_interfaces_and_volumes_through_the_phases(sim: SimulatedClusters,
                                                   kubectl: Kubectl) -> None:
    s = sim.store("source")
    s.create("DataVolume", DV)
    views = record_values(s, "VirtualMachineInstance", NS, "vm1", _status_view)
    s.create("VirtualMachine", VM)
    wait_for(lambda: s.get("VirtualMachineInstance", NS, "vm1")["status"]["phase"] == "Running",
             what="VMI Running")
    seen = [json.loads(v) for v in views]
    scheduling = next(v for v in seen if v["phase"] == "Scheduling")
    assert scheduling["interfaces"] is None and scheduling["volumeStatus"] is None
    assert scheduling["qosClass"] == "Burstable"
    assert scheduling["launcherContainerImageVersion"] == "quay.io/kubevirt/virt-launcher:v1.7.0"
    scheduled = next(v for v in seen if v["phase"] == "Scheduled")
    assert scheduled["interfaces"] == [{"name": "default", "podInterfaceName": "eth0"}]
    assert [(v["name"], v["target"]) for v in scheduled["volumeStatus"]] == [
        ("root", ""), ("cd", ""), ("cloudinit", "")]
    claim = scheduled["volumeStatus"][0]["persistentVolumeClaimInfo"]
    pvc = get_json(kubectl, "pvc", "vm1-root")
    assert claim == {"claimName": "vm1-root", "accessModes": ["ReadWriteMany"],
                     "volumeMode": pvc["spec"]["volumeMode"],
                     "capacity": pvc["status"]["capacity"],
                     "requests": pvc["spec"]["resources"]["requests"],
                     # CDI's global overhead, none for a block device
                     "filesystemOverhead": "0" if pvc["spec"]["volumeMode"] == "Block"
                     else "0.055"}
    assert all("persistentVolumeClaimInfo" not in v for v in scheduled["volumeStatus"][1:])
    vmi = get_json(kubectl, "vmi", "vm1")
    status = vmi["status"]
    pod = get_json(kubectl, "pod", "virt-launcher-vm1-sou01")
    (iface,) = status["interfaces"]
    assert iface["ipAddress"] == pod["status"]["podIP"] and iface["podInterfaceName"] == "eth0"
    assert iface["infoSource"] == "domain" and MAC.match(iface["mac"])
    assert [(v["name"], v["target"]) for v in status["volumeStatus"]] == [
        ("root", "vda"), ("cd", "sda"), ("cloudinit", "vdb")]
    assert status["volumeStatus"][0]["persistentVolumeClaimInfo"] == claim
    # a containerDisk and a cloud-init disk are local to the node
    assert status["migrationMethod"] == "BlockMigration"
    assert status["selinuxContext"] == "none"
    assert status["machine"] == {"type": "pc-q35-rhel9.6.0"}
    assert status["migrationTransport"] == "Unix"
    assert status["currentCPUTopology"] == {"sockets": 2, "cores": 1, "threads": 1}
    assert status["memory"] == {"guestAtBoot": "2Gi", "guestCurrent": "2Gi",
                                "guestRequested": "2Gi"}
    vm = get_json(kubectl, "vm", "vm1")
    assert status["virtualMachineRevisionName"] == (
        f"revision-start-vm-{vm['metadata']['uid']}-{vm['metadata']['generation']}")
    assert status["runtimeUser"] == 107 and status["guestOSInfo"] == {}
    # every phase entered, once, in order (SetVMIPhaseTransitionTimestamp)
    assert [p["phase"] for p in status["phaseTransitionTimestamps"]] == [
        "Pending", "Scheduling", "Scheduled", "Running"]
    assert all(p["phaseTransitionTimestamp"].endswith("Z")
               for p in status["phaseTransitionTimestamps"])


VMI_YAML = """
apiVersion: kubevirt.io/v1
kind: VirtualMachineInstance
metadata: {name: bare, namespace: default}
spec:
  domain:
    resources: {requests: {memory: 512Mi, cpu: 1500m}}
    devices: {}
"""


def test_the_mutator_sets_status_fields_on_create(sim: SimulatedClusters,
                                                  kubectl: Kubectl) -> None:
    for dry in (["--dry-run=server"], []):
        created = json.loads(kubectl("create", *dry, "-f", "-", "-o", "json",
                                     input=VMI_YAML).stdout)
        status = created["status"]
        assert status["phase"] == "Pending"
        assert status["runtimeUser"] == 107 and status["guestOSInfo"] == {}
        # guest memory defaults from requests.memory, sockets from the CPU request (rounded up)
        assert status["memory"] == {"guestAtBoot": "512Mi", "guestCurrent": "512Mi",
                                    "guestRequested": "512Mi"}
        assert status["currentCPUTopology"] == {"sockets": 2, "cores": 1, "threads": 1}
    # no interfaces in the spec: the pod network's default interface
    wait_for(lambda: get_json(kubectl, "vmi", "bare")["status"].get("phase") == "Running")
    (iface,) = get_json(kubectl, "vmi", "bare")["status"]["interfaces"]
    assert iface["name"] == "default" and iface["podInterfaceName"] == "eth0"
    assert iface["ipAddress"] == get_json(kubectl, "pod", "virt-launcher-bare-sou01")[
        "status"]["podIP"]


def test_local_migration_reports_the_target_pod_ip(sim: SimulatedClusters,
                                                   kubectl: Kubectl) -> None:
    s = sim.store("source")
    vm = json.loads(json.dumps(VM))
    vm["spec"]["template"]["spec"]["volumes"][0] = {
        "name": "root", "containerDisk": {"image": "quay.io/containerdisks/fedora"}}
    s.create("VirtualMachine", vm)
    wait_for(lambda: s.get("VirtualMachineInstance", NS, "vm1")["status"]["phase"] == "Running")
    before = get_json(kubectl, "vmi", "vm1")["status"]["interfaces"][0]
    s.create("VirtualMachineInstanceMigration", {
        "metadata": {"name": "mig", "namespace": NS}, "spec": {"vmiName": "vm1"}})
    wait_for(lambda: s.get("VirtualMachineInstanceMigration", NS, "mig")["status"]["phase"]
             == "Succeeded", what="migration Succeeded")
    target_ip = get_json(kubectl, "pod", "virt-launcher-vm1-sou02")["status"]["podIP"]
    assert target_ip != before["ipAddress"]
    after = get_json(kubectl, "vmi", "vm1")["status"]["interfaces"][0]
    assert after == {**before, "ipAddress": target_ip, "ipAddresses": [target_ip]}
    wide = kubectl("get", "vmi", "vm1", "-o", "wide", "--no-headers").stdout.split()
    assert wide[3] == target_ip and wide[4] == "source-node02"


def test_decentralized_target_reports_its_pod_ip_and_the_source_mac(
        make_sim: Callable[..., SimulatedClusters]) -> None:
    from tests.sim.test_controllers_live import prepare, start_migration
    sim = make_sim(tick=0.02)
    s, t = prepare(sim)
    source_iface = s.get("VirtualMachineInstance", "shop", "web")["status"]["interfaces"][0]
    views = record_values(t, "VirtualMachineInstance", "shop", "web", _status_view)
    start_migration(s, t)
    wait_for(lambda: t.get("VirtualMachineInstanceMigration", "shop", "web-target")["status"]
             .get("phase") == "Succeeded", what="target VMIM Succeeded")
    scheduled = next(json.loads(v) for v in views if json.loads(v)["phase"] == "Scheduled")
    assert scheduled["interfaces"] == [{"name": "default", "podInterfaceName": "eth0"}]
    assert scheduled["qosClass"] == "Burstable"
    target = t.get("VirtualMachineInstance", "shop", "web")["status"]
    pod_ip = t.get("Pod", "shop", "virt-launcher-web-tar02")["status"]["podIP"]
    (iface,) = target["interfaces"]
    assert iface["ipAddress"] == pod_ip != source_iface["ipAddress"]
    assert iface["mac"] == source_iface["mac"]  # the migrated domain keeps its MAC
    assert target["volumeStatus"] == [{"name": "root", "target": "vda"}]
    assert target["migrationMethod"] == "BlockMigration"
    assert [p["phase"] for p in target["phaseTransitionTimestamps"]] == [
        "Pending", "WaitingForSync", "Scheduling", "Scheduled", "Running"]


INSTANCETYPE = {"apiVersion": "instancetype.kubevirt.io/v1beta1",
                "kind": "VirtualMachineClusterInstancetype", "metadata": {"name": "u1.medium"},
                "spec": {"cpu": {"guest": 2}, "memory": {"guest": "4Gi"}}}
PREFERENCE = {"apiVersion": "instancetype.kubevirt.io/v1beta1",
              "kind": "VirtualMachinePreference", "metadata": {"name": "cores", "namespace": NS},
              "spec": {"cpu": {"preferredCPUTopology": "cores"}}}


def test_an_instancetype_gives_the_vmi_its_cpu_and_memory(sim: SimulatedClusters,
                                                          kubectl: Kubectl) -> None:
    """A VM without memory of its own starts with its instancetype's (it was refused: no
    memory requested); the VMI's spec, annotations and status show it."""
    s = sim.store("source")
    s.create("VirtualMachineClusterInstancetype", INSTANCETYPE)
    vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
          "metadata": {"name": "sized", "namespace": NS},
          "spec": {"runStrategy": "Always", "instancetype": {"name": "u1.medium"},
                   "template": {"spec": {"domain": {"devices": {}}}}}}
    s.create("VirtualMachine", vm)
    wait_for(lambda: get_json(kubectl, "vmi", "sized")["status"]["phase"] == "Running",
             what="VMI of an instancetype VM Running")
    vmi = get_json(kubectl, "vmi", "sized")
    assert vmi["metadata"]["annotations"]["kubevirt.io/cluster-instancetype-name"] == "u1.medium"
    assert vmi["spec"]["domain"]["memory"]["guest"] == "4Gi"
    assert vmi["spec"]["domain"]["cpu"] == {"sockets": 2, "cores": 1, "threads": 1}
    assert vmi["status"]["memory"] == {"guestAtBoot": "4Gi", "guestCurrent": "4Gi",
                                       "guestRequested": "4Gi"}
    assert vmi["status"]["currentCPUTopology"] == {"sockets": 2, "cores": 1, "threads": 1}
    # a namespaced preference for cores puts the vCPUs there
    s.create("VirtualMachinePreference", PREFERENCE)
    vm2 = json.loads(json.dumps(vm))
    vm2["metadata"]["name"] = "cored"
    vm2["spec"]["preference"] = {"name": "cores", "kind": "VirtualMachinePreference"}
    s.create("VirtualMachine", vm2)
    wait_for(lambda: get_json(kubectl, "vmi", "cored")["status"].get("currentCPUTopology"))
    vmi = get_json(kubectl, "vmi", "cored")
    assert vmi["status"]["currentCPUTopology"] == {"sockets": 1, "cores": 2, "threads": 1}
    assert vmi["metadata"]["annotations"]["kubevirt.io/preference-name"] == "cores"
