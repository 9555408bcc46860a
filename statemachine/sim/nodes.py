"""The Nodes of a simulated cluster, as KubeVirt shows them (kubevirt-fidelity.md §9).

Two worker nodes per cluster, ``<cluster>-node01`` (where VMIs start) and ``<cluster>-node02``
(where migrations go), each with what a client sees on a KubeVirt node: virt-handler's labels
(``kubevirt.io/schedulable: "true"``, ``cpumanager``/``kubevirt.io/cpumanager``), the node
labeller's CPU model/feature/vendor labels, the ``kubevirt.io/heartbeat`` annotation, the device
plugins' ``devices.kubevirt.io/kvm|tun|vhost-net: 1k`` in capacity and allocatable, and the
kubelet's conditions, addresses and ``nodeInfo`` (every field typed clients require).

What it does not do: the heartbeat is written once, at start-up (no periodic writes, no
``NodeUnresponsive`` handling); resources are not accounted against pods.
"""
from __future__ import annotations

import hashlib
from typing import Any

from statemachine.sim.store import now_rfc3339

CPU_MODEL = "Skylake-Client-IBRS"
KUBELET_VERSION = "v1.32.5"


def names(cluster: str) -> list[str]:
    return [f"{cluster}-node01", f"{cluster}-node02"]


def node_ip(name: str) -> str:
    """The node's InternalIP (pods report it as ``hostIP``)."""
    return "192.168.1.2" if name.endswith("2") else "192.168.1.1"


def _uuid(text: str) -> str:
    h = hashlib.sha256(text.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def node(name: str, index: int) -> dict[str, Any]:
    stamp = now_rfc3339()
    devices = {"devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k",
               "devices.kubevirt.io/vhost-net": "1k"}
    resources = {"cpu": "8", "memory": "32882464Ki", "pods": "110",
                 "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                 **devices}

    def condition(ctype: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64", "node-role.kubernetes.io/worker": "",
            "kubevirt.io/schedulable": "true", "cpumanager": "false",
            "kubevirt.io/cpumanager": "false", "kubevirt.io/ksm-enabled": "false",
            f"cpu-model.node.kubevirt.io/{CPU_MODEL}": "true",
            f"cpu-model-migration.node.kubevirt.io/{CPU_MODEL}": "true",
            f"host-model-cpu.node.kubevirt.io/{CPU_MODEL}": "true",
            "cpu-vendor.node.kubevirt.io/Intel": "true",
            "cpu-feature.node.kubevirt.io/vmx": "true",
            "cpu-timer.node.kubevirt.io/tsc-frequency": "2592000000",
            "cpu-timer.node.kubevirt.io/tsc-scalable": "true",
            "hyperv.node.kubevirt.io/synic": "true",
            "kubevirt.io/vm-arch-amd64": "true"},
            "annotations": {"kubevirt.io/heartbeat": stamp, "node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
        "status": {
            "capacity": dict(resources), "allocatable": dict(resources),
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                          "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                          "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID",
                          "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")],
            "addresses": [{"type": "InternalIP", "address": node_ip(name)},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": _uuid(name).replace("-", ""),
                         "systemUUID": _uuid("system/" + name),
                         "bootID": _uuid("boot/" + name), "kernelVersion": "6.8.0-57-generic",
                         "osImage": "Ubuntu 24.04.2 LTS",
                         "containerRuntimeVersion": "containerd://1.7.27",
                         "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                         "operatingSystem": "linux", "architecture": "amd64"}}}


def base_nodes(cluster: str) -> list[dict[str, Any]]:
    return [node(name, i) for i, name in enumerate(names(cluster))]
