"""Unknown fields of built-in kinds, as Go's strict JSON decoding finds them.

kube-apiserver decodes a built-in object into its Go type: a field the type does not have is
an error under ``fieldValidation=Strict`` (400 ``ConfigMap in version "v1" cannot be handled as
a ConfigMap: strict decoding error: unknown field "foo"``), a ``Warning`` under ``Warn`` and
silently dropped under ``Ignore`` (``admission.py`` turns the paths found here into those).
Paths are Go's: ``spec.resources.foo``, ``metadata.ownerReferences[0].foo``.

:data:`SHAPES` spells out, per kind, the fields of its Go type, only as deep as they are known
here for certain: a nested dict is a struct with exactly these fields, a one-item list is a list
of that shape, ``MAP`` a map (any key), ``ANY`` a value not looked into (a scalar, or a struct
this module does not spell out: a Pod's ``spec``, a Job's, a Service's). A field found under
``ANY`` is kept, never reported: a missing field here would refuse a valid object.

What it does not do: type errors (``decode.py``/``validation.decode_problem`` has the string
maps'), duplicate fields, the nested structure of Pods, Services, Jobs, Nodes and Events.
"""
from __future__ import annotations

from typing import Any

ANY: Any = None
MAP = "map"

Shape = Any


def _struct(*names: str, **nested: Shape) -> dict[str, Shape]:
    return {**{name: ANY for name in names}, **nested}


_OBJECT_REF = _struct("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion",
                      "fieldPath")
_LABEL_SELECTOR = _struct(matchLabels=MAP,
                          matchExpressions=[_struct("key", "operator", "values")])
_META = _struct(
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers",
    labels=MAP, annotations=MAP,
    ownerReferences=[_struct("apiVersion", "kind", "name", "uid", "controller",
                             "blockOwnerDeletion")],
    managedFields=[_struct("manager", "operation", "apiVersion", "time", "fieldsType",
                           "fieldsV1", "subresource")])
_TOP = ("apiVersion", "kind")
_RULE = _struct("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs")
_SUBJECT = _struct("kind", "apiGroup", "name", "namespace")
_ROLE_REF = _struct("apiGroup", "kind", "name")
#: ``PersistentVolumeSource``'s members (each a struct not spelled out here).
_PV_SOURCES = ("gcePersistentDisk", "awsElasticBlockStore", "hostPath", "glusterfs", "nfs", "rbd",
               "iscsi", "cinder", "cephfs", "fc", "flocker", "flexVolume", "azureFile",
               "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk",
               "portworxVolume", "scaleIO", "local", "storageos", "csi")
_CONDITION = _struct("type", "status", "lastProbeTime", "lastTransitionTime", "reason",
                     "message")

#: (group, kind) -> the shape of its Go type (see the module doc).
SHAPES: dict[tuple[str, str], dict[str, Shape]] = {
    ("", "ConfigMap"): _struct(*_TOP, "immutable", metadata=_META, data=MAP, binaryData=MAP),
    ("", "Secret"): _struct(*_TOP, "immutable", "type", metadata=_META, data=MAP,
                            stringData=MAP),
    ("", "ServiceAccount"): _struct(*_TOP, "automountServiceAccountToken", metadata=_META,
                                    secrets=[_OBJECT_REF],
                                    imagePullSecrets=[_struct("name")]),
    ("", "Namespace"): _struct(*_TOP, metadata=_META, spec=_struct("finalizers"),
                               status=_struct("phase", conditions=[_struct(
                                   "type", "status", "lastTransitionTime", "reason",
                                   "message")])),
    ("", "PersistentVolumeClaim"): _struct(
        *_TOP, metadata=_META,
        spec=_struct("accessModes", "volumeName", "storageClassName", "volumeMode",
                     "volumeAttributesClassName", selector=_LABEL_SELECTOR,
                     resources=_struct(limits=MAP, requests=MAP),
                     dataSource=_struct("apiGroup", "kind", "name"),
                     dataSourceRef=_struct("apiGroup", "kind", "name", "namespace")),
        status=_struct("phase", "accessModes", "currentVolumeAttributesClassName",
                       capacity=MAP, allocatedResources=MAP, allocatedResourceStatuses=MAP,
                       conditions=[_CONDITION],
                       modifyVolumeStatus=_struct("targetVolumeAttributesClassName",
                                                  "status"))),
    # The volume sources (csi, hostPath, nfs, local, ...) are left open: ``spec`` lists them.
    ("", "PersistentVolume"): _struct(
        *_TOP, metadata=_META,
        spec=_struct(
            "accessModes", "persistentVolumeReclaimPolicy", "storageClassName", "mountOptions",
            "volumeMode", "volumeAttributesClassName", "nodeAffinity", *_PV_SOURCES,
            capacity=MAP, claimRef=_OBJECT_REF),
        status=_struct("phase", "message", "reason", "lastPhaseTransitionTime")),
    ("", "Pod"): _struct(*_TOP, "spec", "status", metadata=_META),
    ("", "Service"): _struct(*_TOP, "spec", "status", metadata=_META),
    ("", "Node"): _struct(*_TOP, "spec", "status", metadata=_META),
    ("batch", "Job"): _struct(*_TOP, "spec", "status", metadata=_META),
    ("rbac.authorization.k8s.io", "Role"): _struct(*_TOP, metadata=_META, rules=[_RULE]),
    ("rbac.authorization.k8s.io", "ClusterRole"): _struct(
        *_TOP, metadata=_META, rules=[_RULE],
        aggregationRule=_struct(clusterRoleSelectors=[_LABEL_SELECTOR])),
    ("rbac.authorization.k8s.io", "RoleBinding"): _struct(
        *_TOP, metadata=_META, subjects=[_SUBJECT], roleRef=_ROLE_REF),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _struct(
        *_TOP, metadata=_META, subjects=[_SUBJECT], roleRef=_ROLE_REF),
    ("coordination.k8s.io", "Lease"): _struct(*_TOP, metadata=_META, spec=_struct(
        "holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime",
        "leaseTransitions", "strategy", "preferredHolder")),
    ("storage.k8s.io", "StorageClass"): _struct(
        *_TOP, "provisioner", "reclaimPolicy", "mountOptions", "allowVolumeExpansion",
        "volumeBindingMode", metadata=_META, parameters=MAP,
        allowedTopologies=[_struct(matchLabelExpressions=[_struct("key", "values")])]),
}


def shape_of(group: str, kind: str) -> dict[str, Shape] | None:
    """The kind's shape, or ``None`` when its fields are not spelled out here."""
    return SHAPES.get((group, kind))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(value: Any, shape: Shape, path: str, unknown: list[str]) -> None:
    """Remove from ``value`` (in place) the fields ``shape`` does not have, appending their
    paths to ``unknown`` in the order they appear."""
    if isinstance(shape, dict) and isinstance(value, dict):
        for key in list(value):
            if key not in shape:
                unknown.append(_join(path, key))
                del value[key]
            elif shape[key] is not ANY and shape[key] != MAP:
                prune(value[key], shape[key], _join(path, key), unknown)
    elif isinstance(shape, list) and isinstance(value, list):
        for i, item in enumerate(value):
            prune(item, shape[0], f"{path}[{i}]", unknown)


def prune_object(group: str, kind: str, obj: dict[str, Any], *,
                 skip: tuple[str, ...] = ()) -> list[str]:
    """Prune ``obj``'s unknown fields (its top-level fields in ``skip`` left alone) and return
    their paths; ``[]`` for a kind without a shape."""
    shape = shape_of(group, kind)
    unknown: list[str] = []
    if shape is None:
        return unknown
    for key in list(obj):
        if key in skip:
            continue
        if key not in shape:
            unknown.append(key)
            del obj[key]
        elif shape[key] is not ANY and shape[key] != MAP:
            prune(obj[key], shape[key], key, unknown)
    return unknown
