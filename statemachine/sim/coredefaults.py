"""Defaults kube-apiserver gives built-in kinds: decoding's and the DefaultStorageClass plugin's.

Two sources, applied at different moments, as upstream applies them:

- :func:`decode` is what Go's decoder fills in whenever a built-in object is decoded (the
  ``SetDefaults_*`` functions of ``pkg/apis/core/v1`` and ``pkg/apis/storage/v1``): on every
  write, and on every read from etcd, so every stored object carries them, whoever wrote it.
  The store calls it on every create and write (seeded and controller objects included).
  PersistentVolumeClaim: ``spec.volumeMode: Filesystem``, ``status.phase: Pending``;
  PersistentVolume: the same and ``spec.persistentVolumeReclaimPolicy: Retain``; Secret:
  ``type: Opaque`` and ``stringData`` folded into ``data`` (base64; the conversion to the
  internal type does it, so ``stringData`` is never stored); StorageClass:
  ``reclaimPolicy: Delete``, ``volumeBindingMode: Immediate``;
  Service: ``type: ClusterIP``, ``sessionAffinity: None``, each port's ``protocol: TCP`` and
  ``targetPort`` (its ``port``), the traffic policies, and ``status: {loadBalancer: {}}`` (Go
  writes the empty structs), an ingress IP's ``ipMode: VIP``.
- what the Service registry allocates (cluster IPs, IP families, node ports) and its other
  create and update steps are ``serviceregistry.py``'s.
- :func:`default_storage_class` is the ``DefaultStorageClass`` admission plugin: on the create
  of a PersistentVolumeClaim through the API (dry runs too) that names no class (neither
  ``spec.storageClassName``, even ``""``, nor the beta annotation
  ``volume.beta.kubernetes.io/storage-class``), it sets ``spec.storageClassName`` to the default
  StorageClass: annotated ``storageclass.kubernetes.io/is-default-class`` (or its beta form)
  ``"true"``, the newest by ``creationTimestamp`` when several are (then by name); none: unset.
  Updates are never defaulted (a claim created unset stays unset).

What it does not do: Pod defaults (``jobdefaults.py`` has a Job's pod template's), load
balancer status. The PV controller's retroactive assignment
of the default class to unbound claims created without one is the simulated CDI's
(``controllers/cdi.py``).
"""
from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from statemachine.sim import admission
from statemachine.sim.kinds import Kind

if TYPE_CHECKING:
    from statemachine.sim.store import Store

Obj = dict[str, Any]
Hook = Callable[[Kind, Obj, "Obj | None", "str | None"], None]

DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def decode(kind: Kind, obj: Obj, *, status: bool = True) -> None:
    """Fill in ``obj``'s decoding defaults in place (see the module doc). ``status=False``
    leaves the status alone (a dry-run create answers the prepared object, never decoded)."""
    if kind.group == "":
        if kind.kind == "PersistentVolumeClaim":
            spec = obj.get("spec")
            if spec is None:  # a Go struct, not a pointer: defaulted even when absent
                spec = obj["spec"] = {}
            if isinstance(spec, dict) and spec.get("volumeMode") is None:
                spec["volumeMode"] = "Filesystem"
            if status:
                current = obj.get("status")
                if current is None or isinstance(current, dict) and not current.get("phase"):
                    obj["status"] = {**(current or {}), "phase": "Pending"}
        elif kind.kind == "PersistentVolume":
            _volume(obj, status)
        elif kind.kind == "Secret":
            if not obj.get("type"):
                obj["type"] = "Opaque"
            plain = obj.pop("stringData", None)
            if isinstance(plain, dict) and plain:
                # v1 -> internal conversion: stringData is write-only, folded into data
                # (base64), its values winning.
                raw = obj.get("data")
                data: dict[str, Any] = raw if isinstance(raw, dict) else {}
                obj["data"] = {**data, **{key: base64.b64encode(str(value).encode()).decode()
                                          for key, value in plain.items()}}
        elif kind.kind == "Service":
            if obj.get("spec") is None:  # a Go struct, not a pointer: defaulted even when absent
                obj["spec"] = {}
            if isinstance(obj["spec"], dict):
                _service_spec(obj["spec"])
            # ServiceStatus and its LoadBalancerStatus are structs, which Go's encoder always
            # writes: every Service reads back with "status": {"loadBalancer": {}} at least.
            current = obj.get("status")
            if current is None or isinstance(current, dict) and current.get("loadBalancer") is None:
                obj["status"] = current = {**(current or {}), "loadBalancer": {}}
            ingress = (current.get("loadBalancer") or {}).get("ingress") if isinstance(
                current, dict) and isinstance(current.get("loadBalancer"), dict) else None
            for entry in ingress if isinstance(ingress, list) else []:
                # The LoadBalancerIPMode default: an ingress IP is a VIP unless it says Proxy.
                if isinstance(entry, dict) and entry.get("ip") and entry.get("ipMode") is None:
                    entry["ipMode"] = "VIP"
    elif kind.group == "storage.k8s.io" and kind.kind == "StorageClass":
        if obj.get("reclaimPolicy") is None:
            obj["reclaimPolicy"] = "Delete"
        if obj.get("volumeBindingMode") is None:
            obj["volumeBindingMode"] = "Immediate"


def _volume(obj: Obj, status: bool) -> None:
    """``SetDefaults_PersistentVolume``: reclaim policy ``Retain``, volume mode ``Filesystem``,
    phase ``Pending``."""
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    if isinstance(spec, dict):
        if not spec.get("persistentVolumeReclaimPolicy"):
            spec["persistentVolumeReclaimPolicy"] = "Retain"
        if spec.get("volumeMode") is None:
            spec["volumeMode"] = "Filesystem"
    current = obj.get("status")
    if status and (current is None or isinstance(current, dict) and not current.get("phase")):
        obj["status"] = {**(current or {}), "phase": "Pending"}


def _service_spec(spec: Obj) -> None:
    """``SetDefaults_Service``: affinity, type, port protocol and target port, traffic
    policies, load balancer node ports."""
    affinity = spec.setdefault("sessionAffinity", "None") or "None"
    spec["sessionAffinity"] = affinity
    if affinity == "None":
        spec.pop("sessionAffinityConfig", None)
    elif affinity == "ClientIP" and not ((spec.get("sessionAffinityConfig") or {}).get(
            "clientIP") or {}).get("timeoutSeconds"):
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    stype = spec.get("type") or "ClusterIP"
    spec["type"] = stype
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            if not port.get("protocol"):
                port["protocol"] = "TCP"
            if port.get("targetPort") in (None, 0, ""):
                port["targetPort"] = port.get("port")
    external = stype in ("LoadBalancer", "NodePort") or (
        stype == "ClusterIP" and bool(spec.get("externalIPs")))
    if external and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and stype in (
            "ClusterIP", "NodePort", "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True


def is_default_class(storage_class: Obj) -> bool:
    """Whether a StorageClass is marked the default (either annotation, value ``"true"``)."""
    notes = (storage_class.get("metadata") or {}).get("annotations") or {}
    return any(notes.get(key) == "true" for key in DEFAULT_CLASS_ANNOTATIONS)


def pick_default_class(classes: list[Obj]) -> Obj | None:
    """The default StorageClass among ``classes``: the newest marked one, ties by name."""
    marked = [c for c in classes if is_default_class(c)]
    if not marked:
        return None
    # creationTimestamp is RFC 3339 in UTC (second precision), so it sorts as text.
    marked.sort(key=lambda c: c["metadata"].get("name", ""))
    marked.sort(key=lambda c: c["metadata"].get("creationTimestamp") or "", reverse=True)
    return marked[0]


def default_storage_class(kind: Kind, obj: Obj, classes: list[Obj]) -> None:
    """The DefaultStorageClass admission plugin on a create of ``obj`` (see the module doc)."""
    if kind.group or kind.kind != "PersistentVolumeClaim":
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("storageClassName") is not None:
        return
    if BETA_CLASS_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
        return
    chosen = pick_default_class(classes)
    if chosen is not None:
        spec["storageClassName"] = chosen["metadata"]["name"]


def hook(store: Store, inner: Hook) -> Hook:
    """The store's admission hook: the DefaultStorageClass plugin on a create made by an API
    request (built-in admission plugins mutate before the webhooks), the
    StorageObjectInUseProtection plugin's ``kubernetes.io/pv-protection`` finalizer on a
    PersistentVolume's (decision: not yet its ``kubernetes.io/pvc-protection`` on claims, whose
    deletion would then wait for their pods), then ``inner``."""
    def run(kind: Kind, new: Obj, old: Obj | None, subresource: str | None) -> None:
        if old is None and not subresource and not kind.group and admission.in_request():
            if kind.kind == "PersistentVolumeClaim":
                default_storage_class(kind, new, store.peek_list("StorageClass"))
            elif kind.kind == "PersistentVolume":
                meta = new.setdefault("metadata", {})
                fins = meta.get("finalizers") or []
                if isinstance(fins, list) and "kubernetes.io/pv-protection" not in fins:
                    meta["finalizers"] = [*fins, "kubernetes.io/pv-protection"]
        inner(kind, new, old, subresource)
    return run
