"""How each list and map field of a served kind merges, for strategic merge patch and for
server-side apply.

Built-in kinds: a table of the fields that are not "replace the list whole" (or that are atomic
maps), keyed by the field's path from the object root with list positions left out, e.g.
``spec.template.spec.containers.env``. The facts come from the Go struct tags of the upstream API
types (``patchStrategy``/``patchMergeKey`` for strategic merge patch, ``+listType``/
``+listMapKey``/``+mapType``/``+structType`` for server-side apply); both are recorded because they
differ in places (container ports merge on ``containerPort`` for SMP but are keyed by
``containerPort`` and ``protocol`` for apply; a Job's conditions merge by ``type`` for SMP but are
atomic for apply).

Custom resources: lists are atomic unless their schema (the CRD's, or the shipped upstream one
for KubeVirt/CDI kinds: ``admission.schema_of``) says otherwise: :func:`rules_from_schema` reads
``x-kubernetes-list-type``, ``x-kubernetes-list-map-keys`` and ``x-kubernetes-map-type``, once
per schema.

Not here: the merging itself (``patches.py``) and field ownership (``managedfields.py``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

from statemachine.sim import admission
from statemachine.sim.kinds import Kind
from statemachine.sim.structural import StructuralSchema

ListType = Literal["atomic", "set", "map"]


@dataclass(frozen=True)
class Rule:
    """The merge behaviour of one list or map field."""

    #: Server-side apply list type; for a map field "atomic" means the map is owned whole.
    list_type: ListType = "atomic"
    #: Server-side apply list-map keys.
    keys: tuple[str, ...] = ()
    #: Values a missing key takes (schema defaults, e.g. a port's protocol ``TCP``).
    key_defaults: tuple[tuple[str, Any], ...] = ()
    #: Strategic merge patch: merge lists item by item (else the patch list replaces).
    smp_merge: bool = False
    #: Strategic merge patch merge key ("" for a list of scalars merged as a set).
    merge_key: str = ""
    #: Strategic merge patch ``retainKeys`` on the items (``$retainKeys`` clears unlisted fields).
    retain_keys: bool = False


Rules = dict[str, Rule]

ATOMIC = Rule()
_TCP = (("protocol", "TCP"),)


def _keyed(key: str, *ssa_keys: str, smp: bool = True, retain: bool = False,
           defaults: tuple[tuple[str, Any], ...] = ()) -> Rule:
    return Rule("map", ssa_keys or (key,), defaults, smp, key, retain)


_BY_TYPE = _keyed("type")
_LABEL_SELECTOR = ATOMIC  # metav1.LabelSelector is +structType=atomic


def _object_meta(prefix: str) -> Rules:
    return {f"{prefix}finalizers": Rule("set", smp_merge=True),
            f"{prefix}ownerReferences": _keyed("uid")}


def _container(prefix: str) -> Rules:
    return {
        prefix: _keyed("name"),
        f"{prefix}.ports": _keyed("containerPort", "containerPort", "protocol", defaults=_TCP),
        f"{prefix}.env": _keyed("name"),
        f"{prefix}.volumeMounts": _keyed("mountPath"),
        f"{prefix}.volumeDevices": _keyed("devicePath"),
        f"{prefix}.resources.claims": _keyed("name", smp=False),
    }


def _pod_spec(prefix: str) -> Rules:
    out: Rules = {
        f"{prefix}volumes": _keyed("name", retain=True),
        f"{prefix}imagePullSecrets": _keyed("name"),
        f"{prefix}hostAliases": _keyed("ip"),
        f"{prefix}topologySpreadConstraints": _keyed("topologyKey", "topologyKey",
                                                     "whenUnsatisfiable"),
        f"{prefix}schedulingGates": _keyed("name"),
        f"{prefix}resourceClaims": _keyed("name", retain=True),
        f"{prefix}nodeSelector": ATOMIC,
    }
    for containers in ("containers", "initContainers", "ephemeralContainers"):
        out.update(_container(prefix + containers))
    return out


_POD_STATUS: Rules = {
    "status.conditions": _BY_TYPE,
    "status.podIPs": _keyed("ip"),
    "status.hostIPs": Rule("atomic", smp_merge=True, merge_key="ip"),
}

_META = _object_meta("metadata.")

BUILTIN: dict[str, Rules] = {
    "Pod": {**_META, **_pod_spec("spec."), **_POD_STATUS},
    "Job": {**_META, **_object_meta("spec.template.metadata."),
            **_pod_spec("spec.template.spec."),
            "spec.selector": _LABEL_SELECTOR,
            "status.conditions": Rule("atomic", smp_merge=True, merge_key="type")},
    "PersistentVolumeClaim": {**_META, "spec.selector": _LABEL_SELECTOR,
                              "status.conditions": _BY_TYPE},
    "Service": {**_META,
                "spec.ports": _keyed("port", "port", "protocol", defaults=_TCP),
                "spec.selector": ATOMIC,
                "status.conditions": _BY_TYPE},
    "ServiceAccount": {**_META, "secrets": _keyed("name")},
    "Namespace": {**_META, "status.conditions": _BY_TYPE},
}


def rules_for(kind: Kind) -> Rules:
    """The rules of ``kind``'s fields (an empty table: every list atomic, every map granular)."""
    if not kind.custom:
        return BUILTIN.get(kind.kind, _META)
    schema = admission.schema_of(kind)
    if schema is None:
        return _META
    with _lock:
        cached = _by_schema.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1]
    rules = rules_from_schema(schema.raw)
    with _lock:
        _by_schema[id(schema)] = (schema, rules)
    return rules


def rules_from_schema(schema: dict[str, Any]) -> Rules:
    """The list and map markers of a CRD's OpenAPI v3 schema as a table (plus ObjectMeta's)."""
    out: Rules = dict(_META)

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "map":
            out[path] = Rule("map", tuple(node.get("x-kubernetes-list-map-keys") or ()))
        elif list_type == "set":
            out[path] = Rule("set")
        if node.get("x-kubernetes-map-type") == "atomic":
            out[path] = ATOMIC
        for name, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{name}" if path else name)
        walk(node.get("items"), path)

    walk(schema, "")
    return out


_lock = threading.Lock()
#: Rules per schema object (kept with it, so a recycled id() is never mistaken for it).
_by_schema: dict[int, tuple[StructuralSchema, Rules]] = {}
