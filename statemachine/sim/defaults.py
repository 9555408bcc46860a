"""Objects every simulated cluster starts with, before the seed file is applied.

``base_objects(cluster_name)`` returns what a freshly installed KubeVirt + CDI cluster has and the
simulated controllers rely on:

- Namespace ``kubevirt`` (the KubeVirt install namespace);
- the KubeVirt CR ``kubevirt/kubevirt``: feature gates ``DecentralizedLiveMigration``,
  ``IncrementalBackup`` and ``VMExport`` on, ``status.phase: Deployed``, ``Available=True`` and
  ``status.synchronizationAddresses`` = this cluster's simulated sync address
  (kubevirt-lifecycle.md §6.1);
- ConfigMaps ``kubevirt-ca`` (this cluster's own CA PEM in ``data.ca-bundle``) and
  ``kubevirt-external-ca`` (``ca-bundle: ""``), as the operator creates them (§6.2), plus
  ``kubevirt-export-ca``;
- StorageClasses ``standard`` (default, Immediate binding) and ``local-wffc``
  (WaitForFirstConsumer), with StorageProfiles for both;
- Nodes ``<cluster>-node01`` and ``<cluster>-node02`` as KubeVirt shows them (``nodes.py``).

It does not create users, RBAC or workloads: that is the seed file's job. The values (addresses,
PEMs, export host) come from ``statemachine.sim.addresses`` so that the controllers
agree with them.
"""
from __future__ import annotations

from typing import Any

from statemachine.sim import addresses, nodes

DEFAULT_STORAGE_CLASS = "standard"
WFFC_STORAGE_CLASS = "local-wffc"
PROVISIONER = "sim.smrun.io/hostpath"


def kubevirt_cr(cluster_name: str) -> dict[str, Any]:
    """The KubeVirt CR with a Deployed status and this cluster's sync address."""
    return {
        "apiVersion": "kubevirt.io/v1", "kind": "KubeVirt",
        "metadata": {"name": "kubevirt", "namespace": addresses.KUBEVIRT_NAMESPACE},
        "spec": {
            "configuration": {
                "developerConfiguration": {
                    "featureGates": ["DecentralizedLiveMigration", "IncrementalBackup", "VMExport"],
                },
            },
            "synchronizationPort": str(addresses.SYNC_PORT),
        },
        "status": {
            "phase": "Deployed",
            "conditions": [
                {"type": "Available", "status": "True", "reason": "AllComponentsReady",
                 "message": "All components are ready."},
                {"type": "Progressing", "status": "False", "reason": "AllComponentsReady",
                 "message": "All components are ready."},
                {"type": "Degraded", "status": "False", "reason": "AllComponentsReady",
                 "message": "All components are ready."},
            ],
            "synchronizationAddresses": [addresses.sync_address(cluster_name)],
            "observedKubeVirtVersion": "v1.9.0-sim",
        },
    }


def _configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": addresses.KUBEVIRT_NAMESPACE}, "data": data}


def _storage_class(name: str, binding: str, default: bool) -> dict[str, Any]:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": annotations},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete",
            "volumeBindingMode": binding, "allowVolumeExpansion": True}


def _storage_profile(name: str) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "StorageProfile",
            "metadata": {"name": name}, "spec": {},
            "status": {"storageClass": name, "provisioner": PROVISIONER,
                       "claimPropertySets": [
                           {"accessModes": ["ReadWriteMany"], "volumeMode": "Block"},
                           {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}]}}


def base_objects(cluster_name: str) -> list[dict[str, Any]]:
    """The objects a new simulated cluster named ``cluster_name`` starts with (see module doc)."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": addresses.KUBEVIRT_NAMESPACE}},
        kubevirt_cr(cluster_name),
        _configmap(addresses.CA_CONFIGMAP, {"ca-bundle": addresses.ca_pem(cluster_name)}),
        _configmap(addresses.EXTERNAL_CA_CONFIGMAP, {"ca-bundle": ""}),
        _configmap(addresses.EXPORT_CA_CONFIGMAP,
                   {"ca-bundle": addresses.export_ca_pem(cluster_name)}),
        _storage_class(DEFAULT_STORAGE_CLASS, "Immediate", True),
        _storage_class(WFFC_STORAGE_CLASS, "WaitForFirstConsumer", False),
        _storage_profile(DEFAULT_STORAGE_CLASS),
        _storage_profile(WFFC_STORAGE_CLASS),
        *nodes.base_nodes(cluster_name),
    ]
