"""Compact OpenAPI schemas of the built-in Kubernetes kinds the simulator serves.

Written for this project (field names are the Kubernetes API's; descriptions are short, our own):
enough for ``kubectl explain configmap`` and friends, honest about what is left open. A field
whose structure is not spelled out here is marked ``x-kubernetes-preserve-unknown-fields`` and
says so in its description. ``PersistentVolumeClaim.spec`` uses the full upstream type shipped in
``data/`` (the KubeVirt document defines it). These schemas are published in ``/openapi/v2`` and
``/openapi/v3`` only: built-in kinds are not pruned or validated against them.
"""
from __future__ import annotations

import functools
from typing import Any

from statemachine.sim import schemas

_OPEN = "x-kubernetes-preserve-unknown-fields"


def _str(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _bool(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def _int(description: str) -> dict[str, Any]:
    return {"type": "integer", "format": "int32", "description": description}


def _map(description: str, value_format: str = "") -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string"}
    if value_format:
        value["format"] = value_format
    return {"type": "object", "additionalProperties": value, "description": description}


def _obj(description: str, props: dict[str, Any] | None = None,
         required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "description": description}
    if props is None:
        out[_OPEN] = True
        out["description"] = description + " (structure not published by this simulator)"
    else:
        out["properties"] = props
    if required:
        out["required"] = required
    return out


def _list(description: str, items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items, "description": description}


_NAME_REF = _obj("A reference to an object by name.", {"name": _str("Name of the referent.")})
_SUBJECT = _obj("A user, group or service account a binding grants a role to.", {
    "kind": _str("User, Group or ServiceAccount."), "name": _str("Name of the subject."),
    "namespace": _str("Namespace of a ServiceAccount subject."),
    "apiGroup": _str("API group of the subject's kind.")}, ["kind", "name"])
_RULE = _obj("One permission: verbs on resources of API groups.", {
    "apiGroups": _list("API groups the rule covers (\"\" is the core group).", _str("")),
    "resources": _list("Resources the rule covers.", _str("")),
    "resourceNames": _list("Names the rule is limited to.", _str("")),
    "verbs": _list("Verbs allowed (get, list, watch, create, update, patch, delete, ...).",
                   _str("")),
    "nonResourceURLs": _list("Non-resource URLs the rule covers.", _str(""))}, ["verbs"])
_ROLE_REF = _obj("The role a binding grants.", {
    "apiGroup": _str("API group of the role."), "kind": _str("Role or ClusterRole."),
    "name": _str("Name of the role.")}, ["apiGroup", "kind", "name"])


def _kinds() -> dict[tuple[str, str, str], tuple[str, dict[str, Any]]]:
    """``(group, version, kind)`` -> (description, properties other than apiVersion/kind/metadata)."""
    pvc_spec = dict(schemas.core_type("PersistentVolumeClaimSpec"))
    return {
        ("", "v1", "ConfigMap"): ("Configuration data for pods to consume.", {
            "data": _map("Configuration data as UTF-8 strings."),
            "binaryData": _map("Binary configuration data, base64-encoded.", "byte"),
            "immutable": _bool("If true, the data cannot be changed after creation.")}),
        ("", "v1", "Secret"): ("Sensitive data, such as passwords, tokens or keys.", {
            "data": _map("Secret data, base64-encoded.", "byte"),
            "stringData": _map("Write-only plain-text data, merged into data on write."),
            "type": _str("Used to ease programmatic handling of the secret data "
                         "(e.g. Opaque, kubernetes.io/tls)."),
            "immutable": _bool("If true, the data cannot be changed after creation.")}),
        ("", "v1", "Namespace"): ("A scope for names of namespaced objects.", {
            "spec": _obj("Desired state of the namespace.", {
                "finalizers": _list("Must be empty before the namespace is removed.",
                                    _str(""))}),
            "status": _obj("Observed state of the namespace.", {
                "phase": _str("Active or Terminating."),
                "conditions": _list("Observations of the namespace's state.",
                                    _obj("A namespace condition."))})}),
        ("", "v1", "ServiceAccount"): ("An identity for processes that run in a pod.", {
            "secrets": _list("Secrets pods running as this account may use.", _NAME_REF),
            "imagePullSecrets": _list("Secrets used to pull images.", _NAME_REF),
            "automountServiceAccountToken": _bool("Whether pods mount an API token.")}),
        ("", "v1", "PersistentVolumeClaim"): ("A user's request for and claim to a "
                                               "persistent volume.", {
            "spec": pvc_spec,
            "status": _obj("Observed state of the claim.", {
                "phase": _str("Pending, Bound or Lost."),
                "accessModes": _list("Access modes of the bound volume.", _str("")),
                "capacity": _map("Capacity of the bound volume."),
                "conditions": _list("Observations of the claim's state.",
                                    _obj("A claim condition."))})}),
        ("", "v1", "PersistentVolume"): ("A piece of storage in the cluster, provisioned "
                                          "by an administrator or dynamically.", {
            "spec": _obj("Desired state of the volume.", {
                "capacity": _map("The volume's capacity (only storage)."),
                "accessModes": _list("How the volume can be mounted.", _str("")),
                "claimRef": _obj("The claim bound to the volume.", {
                    key: _str(f"The claim's {key}.") for key in (
                        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                        "fieldPath")}),
                "persistentVolumeReclaimPolicy": _str("What happens after the claim is "
                                                      "released: Retain, Delete or Recycle."),
                "storageClassName": _str("The StorageClass the volume belongs to."),
                "mountOptions": _list("Mount options.", _str("")),
                "volumeMode": _str("Block or Filesystem."),
                "volumeAttributesClassName": _str("The VolumeAttributesClass of the volume."),
                "nodeAffinity": _obj("The nodes the volume can be reached from."),
                "csi": _obj("A volume of an external CSI driver.", {
                    "driver": _str("The CSI driver's name."),
                    "volumeHandle": _str("The driver's identifier of the volume."),
                    "readOnly": _bool("Whether the volume is published read-only."),
                    "fsType": _str("The filesystem type to mount."),
                    "volumeAttributes": _map("Driver-specific attributes."),
                    "controllerPublishSecretRef": _obj("Secret for ControllerPublish."),
                    "nodeStageSecretRef": _obj("Secret for NodeStage."),
                    "nodePublishSecretRef": _obj("Secret for NodePublish."),
                    "controllerExpandSecretRef": _obj("Secret for ControllerExpand."),
                    "nodeExpandSecretRef": _obj("Secret for NodeExpand.")},
                    ["driver", "volumeHandle"]),
                **{source: _obj(f"A {source} volume.") for source in (
                    "hostPath", "nfs", "local", "iscsi", "fc", "rbd", "cephfs", "glusterfs",
                    "gcePersistentDisk", "awsElasticBlockStore", "azureDisk", "azureFile",
                    "cinder", "flexVolume", "flocker", "vsphereVolume", "quobyte",
                    "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos")}}),
            "status": _obj("Observed state of the volume.", {
                "phase": _str("Pending, Available, Bound, Released or Failed."),
                "message": _str("Why the volume is in its phase, for humans."),
                "reason": _str("Why the volume is in its phase, in one word."),
                "lastPhaseTransitionTime": {"type": "string", "format": "date-time",
                                            "description": "When the phase last changed."}})}),
        ("", "v1", "Pod"): ("A group of containers that run together on a node.", {
            "spec": _obj("Desired state of the pod."),
            "status": _obj("Observed state of the pod.")}),
        ("", "v1", "Service"): ("A named abstraction of a network service.", {
            "spec": _obj("Desired state of the service."),
            "status": _obj("Observed state of the service.")}),
        ("", "v1", "Event"): ("A report of something that happened in the cluster.", {
            "involvedObject": _obj("The object the event is about."),
            "reason": _str("Short, machine-understandable reason for the event."),
            "message": _str("Human-readable description of the event."),
            "type": _str("Normal or Warning."),
            "count": _int("How many times the event occurred."),
            "firstTimestamp": {"type": "string", "format": "date-time",
                               "description": "When the event was first recorded."},
            "lastTimestamp": {"type": "string", "format": "date-time",
                              "description": "When the event was last recorded."},
            "source": _obj("The component reporting the event.")}),
        ("batch", "v1", "Job"): ("A task that runs pods to completion.", {
            "spec": _obj("Desired state of the job.", {
                "template": _obj("The pod template the job runs."),
                "backoffLimit": _int("Retries before the job is marked failed."),
                "completions": _int("Successful pods the job needs."),
                "parallelism": _int("Pods the job runs at once."),
                "activeDeadlineSeconds": {"type": "integer", "format": "int64",
                                          "description": "Time limit of the job, in seconds."},
                "ttlSecondsAfterFinished": _int("Seconds after which a finished job is "
                                                "deleted."),
                "selector": _obj("Label query over the job's pods."),
                "suspend": _bool("Whether the job's pods are suspended.")}),
            "status": _obj("Observed state of the job.")}),
        ("rbac.authorization.k8s.io", "v1", "Role"): ("Namespaced permissions.", {
            "rules": _list("The permissions of the role.", _RULE)}),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"): ("Cluster-wide permissions.", {
            "rules": _list("The permissions of the role.", _RULE),
            "aggregationRule": _obj("How the rules of other cluster roles are aggregated.")}),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"): (
            "Grants a role's permissions in a namespace.", {
                "subjects": _list("Who the role is granted to.", _SUBJECT),
                "roleRef": _ROLE_REF}),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"): (
            "Grants a cluster role's permissions cluster-wide.", {
                "subjects": _list("Who the role is granted to.", _SUBJECT),
                "roleRef": _ROLE_REF}),
        ("coordination.k8s.io", "v1", "Lease"): ("A lease: who holds a lock and until when.", {
            "spec": _obj("The lease's holder and timing.", {
                "holderIdentity": _str("The identity of the holder."),
                "leaseDurationSeconds": _int("How long a holder waits before taking over."),
                "acquireTime": {"type": "string", "format": "date-time",
                                "description": "When the current holder acquired the lease."},
                "renewTime": {"type": "string", "format": "date-time",
                              "description": "When the holder last renewed the lease."},
                "leaseTransitions": _int("How many times the holder changed."),
                "strategy": _str("The coordinated leader election strategy."),
                "preferredHolder": _str("The holder the strategy prefers.")})}),
        ("storage.k8s.io", "v1", "StorageClass"): ("A class of storage that can be "
                                                   "provisioned.", {
            "provisioner": _str("The volume plugin that provisions volumes."),
            "parameters": _map("Parameters for the provisioner."),
            "reclaimPolicy": _str("Delete or Retain."),
            "volumeBindingMode": _str("Immediate or WaitForFirstConsumer."),
            "allowVolumeExpansion": _bool("Whether claims of this class may be expanded.")}),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"): (
            "Defines a custom resource type the API server serves.", {
                "spec": _obj("The custom resource's names, scope and versions.", {
                    "group": _str("API group of the custom resources."),
                    "names": _obj("Names of the custom resource (plural, singular, kind, "
                                  "listKind, shortNames, categories)."),
                    "scope": _str("Namespaced or Cluster."),
                    "versions": _list("The versions served, each with its schema.",
                                      _obj("One version of the custom resource.")),
                    "conversion": _obj("How versions are converted.")},
                    ["group", "names", "scope", "versions"]),
                "status": _obj("Observed state: conditions, accepted names, stored "
                               "versions.")}),
    }


@functools.lru_cache(maxsize=1)
def core_schemas() -> dict[tuple[str, str, str], dict[str, Any]]:
    """``(group, version, kind)`` -> object schema (``metadata`` left for the caller to add)."""
    out = {}
    for key, (description, props) in _kinds().items():
        out[key] = {"type": "object", "description": description,
                    "properties": {
                        "apiVersion": _str("The versioned schema of this representation."),
                        "kind": _str("The REST resource this object represents."),
                        **props}}
    return out
