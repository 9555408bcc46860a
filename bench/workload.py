"""Generated benchmark workloads: a simulator seed of N running VMs and a live plan for them.

Every VM looks like ``web-1`` of examples/live (one DataVolume root disk on a ReadWriteMany class,
the cluster instancetype ``u1.small`` and preference ``fedora``, the pod network), plus a shared
ConfigMap and Secret: VMs are grouped ``SHARE_GROUP`` at a time and each group shares one
``cfg-<g>`` ConfigMap and one ``tls-<g>`` Secret, so the run exercises ``ensure`` of objects that
several VMs need. All VMs live in one namespace (``bench``): the engine's watches are per
(cluster, kind, namespace), so one namespace keeps the watch count independent of N.

No hooks: the benchmark measures orchestration, and a hook Job adds only simulated Job time.
This module writes files; it does not start anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "bench"
SHARE_GROUP = 10

Obj = dict[str, Any]

_CONDITIONS = [{"type": "Ready", "status": "True"},
               {"type": "LiveMigratable", "status": "True"},
               {"type": "StorageLiveMigratable", "status": "True"}]


def vm_name(i: int) -> str:
    """The name of VM number ``i`` (zero-padded so names sort in start order)."""
    return f"vm-{i:05d}"


def _vm_spec(name: str, group: int, applied: bool = False) -> Obj:
    """The VM template's spec, or with ``applied`` the VMI's: CPU and memory come from the
    instancetype alone (KubeVirt refuses a template that sets a field its instancetype owns)."""
    sized = {"cpu": {"sockets": 1, "cores": 1, "threads": 1}, "memory": {"guest": "2Gi"}}
    return {
        "domain": {**(sized if applied else {}), "devices": {
            "disks": [{"name": "root", "disk": {"bus": "virtio"}},
                      {"name": "config", "disk": {"bus": "virtio"}},
                      {"name": "tls", "disk": {"bus": "virtio"}}],
            "interfaces": [{"name": "default", "masquerade": {}}]}},
        "networks": [{"name": "default", "pod": {}}],
        "volumes": [{"name": "root", "dataVolume": {"name": f"{name}-root"}},
                    {"name": "config", "configMap": {"name": f"cfg-{group}"}},
                    {"name": "tls", "secret": {"secretName": f"tls-{group}"}}],
    }


def _vm_objects(i: int) -> list[Obj]:
    name, group = vm_name(i), i // SHARE_GROUP
    meta = {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench"}}
    storage = {"storageClassName": "shared", "accessModes": ["ReadWriteMany"],
               "volumeMode": "Block", "resources": {"requests": {"storage": "10Gi"}}}
    return [
        {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
         "metadata": {"name": f"{name}-root", "namespace": NAMESPACE},
         "spec": {"source": {"registry": {"url": "docker://quay.io/containerdisks/fedora:41"}},
                  "storage": storage},
         "status": {"phase": "Succeeded", "progress": "100.0%", "claimName": f"{name}-root"}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": f"{name}-root", "namespace": NAMESPACE,
                      "annotations": {"cdi.kubevirt.io/storage.contentType": "kubevirt"}},
         "spec": storage,
         "status": {"phase": "Bound", "accessModes": ["ReadWriteMany"],
                    "capacity": {"storage": "10Gi"}}},
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": meta,
         "spec": {"runStrategy": "Always",
                  "instancetype": {"name": "u1.small",
                                   "kind": "VirtualMachineClusterInstancetype"},
                  "preference": {"name": "fedora", "kind": "VirtualMachineClusterPreference"},
                  "template": {"metadata": {"labels": {"app": "bench"}},
                               "spec": _vm_spec(name, group)}},
         "status": {"printableStatus": "Running", "created": True, "ready": True,
                    "runStrategy": "Always", "conditions": _CONDITIONS}},
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
         "metadata": {"name": name, "namespace": NAMESPACE,
                      "labels": {"app": "bench", "kubevirt.io/nodeName": "source-node01"}},
         "spec": _vm_spec(name, group, applied=True),
         "status": {"phase": "Running", "nodeName": "source-node01",
                    "conditions": _CONDITIONS}},
    ]


def _shared(cluster: str) -> list[Obj]:
    """Objects both clusters need: namespace, storage classes, instancetype and preference."""
    classes = ["shared"] if cluster == "source" else ["fast-rwx"]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": c},
           "provisioner": "sim.smrun.io/hostpath", "volumeBindingMode": "Immediate"}
          for c in classes),
        {"apiVersion": "instancetype.kubevirt.io/v1beta1",
         "kind": "VirtualMachineClusterInstancetype", "metadata": {"name": "u1.small"},
         "spec": {"cpu": {"guest": 1}, "memory": {"guest": "2Gi"}}},
        {"apiVersion": "instancetype.kubevirt.io/v1beta1",
         "kind": "VirtualMachineClusterPreference", "metadata": {"name": "fedora"},
         "spec": {"devices": {"preferredDiskBus": "virtio"}}},
    ]


def seed(n: int) -> dict[str, list[Obj]]:
    """The simulator seed: ``n`` running VMs on the source, an empty namespace on the target."""
    source = _shared("source")
    for g in range((n + SHARE_GROUP - 1) // SHARE_GROUP):
        source.append({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": f"cfg-{g}", "namespace": NAMESPACE},
                       "data": {"app.conf": f"group = {g}\n"}})
        source.append({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                       "metadata": {"name": f"tls-{g}", "namespace": NAMESPACE},
                       "data": {"tls.crt": "c2ltdWxhdGVk", "tls.key": "c2ltdWxhdGVk"}})
    for i in range(n):
        source.extend(_vm_objects(i))
    return {"source": source, "target": _shared("target")}


def plan(n: int, kubeconfig: Path, max_in_flight: int, name: str) -> Obj:
    """A live plan for the ``n`` VMs against the kubeconfig contexts ``source`` and ``target``."""
    return {
        "apiVersion": "smrun.io/v1alpha1", "kind": "Plan",
        "metadata": {"name": name, "description": f"benchmark: {n} live VMs"},
        "spec": {
            "type": "live",
            "source": {"kubeconfig": str(kubeconfig), "context": "source"},
            "target": {"kubeconfig": str(kubeconfig), "context": "target"},
            "map": {"storage": [{"source": "shared",
                                 "destination": {"storageClass": "fast-rwx",
                                                 "accessMode": "ReadWriteMany",
                                                 "volumeMode": "Block"}}],
                    "network": [{"source": {"type": "pod"}, "destination": {"type": "pod"}}]},
            "settings": {"maxInFlight": max_in_flight, "stepTimeout": "10m"},
            "vms": [{"name": vm_name(i), "namespace": NAMESPACE} for i in range(n)],
        },
    }


def write(directory: Path, n: int, max_in_flight: int) -> tuple[Path, Path, Path]:
    """Write ``seed.yaml`` and ``plan.yaml`` for ``n`` VMs; returns (seed, plan, kubeconfig)."""
    directory.mkdir(parents=True, exist_ok=True)
    seed_path, plan_path = directory / "seed.yaml", directory / "plan.yaml"
    kubeconfig = directory / "kubeconfig"
    # CSafeDumper when available: the 1,000-VM seed is ~5,000 objects.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    seed_path.write_text(yaml.dump(seed(n), Dumper=dumper, sort_keys=False), encoding="utf-8")
    plan_path.write_text(yaml.dump(plan(n, kubeconfig, max_in_flight, f"bench-{n}"),
                                   Dumper=dumper, sort_keys=False), encoding="utf-8")
    return seed_path, plan_path, kubeconfig
