"""NetworkMap and StorageMap -> the plan's ``map.network`` and ``map.storage``.

Network sources: the pod network, or a NetworkAttachmentDefinition by ``namespace``/``name`` (or
by ``id``, its uid); destinations: ``pod``, ``multus`` (``namespace/name``, KubeVirt's
``networkName`` form) or ``ignored``. Storage: a source storage class by name (or ``id``) to a
destination class with optional access and volume modes. A map whose Providers are not the
Plan's is used as the Plan names it, with a warning.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemachine.forklift.documents import InputObject
from statemachine.forklift.scope import IGNORED, Scope
from statemachine.forklift.shape import API_VERSION, NETWORK_MAP_SPEC, STORAGE_MAP_SPEC
from statemachine.yamlsource import DocPath

__all__ = ["Maps"]


class Maps(Scope):
    """Converts the Plan's two maps."""

    def maps(self, source: InputObject, target: InputObject) -> dict[str, Any]:
        refs = self.fk.spec["map"]
        out: dict[str, Any] = {}
        for field_name, kind, convert_entry in (
                ("storage", "StorageMap", self.storage_entry),
                ("network", "NetworkMap", self.network_entry)):
            ns, name = self.ref(refs[field_name], self.fk)
            obj = self.objects.need(API_VERSION, kind, ns, name, referrer=self.fk,
                                    path=("spec", "map", field_name))
            self.check_pair(obj, source, target)
            self.unknown(obj, ("spec",), obj.spec,
                         STORAGE_MAP_SPEC if kind == "StorageMap" else NETWORK_MAP_SPEC)
            entries = [convert_entry(obj, i, e) for i, e in enumerate(obj.spec.get("map") or [])]
            if field_name == "storage":
                self.unique_storage(obj, entries)
            if entries:
                out[field_name] = entries
        return out

    def check_pair(self, obj: InputObject, source: InputObject, target: InputObject) -> None:
        pair = obj.spec["provider"]
        for side, provider in (("source", source), ("destination", target)):
            ns, name = self.ref(pair[side], obj)
            if (ns, name) != (provider.namespace, provider.name):
                self.warn(obj, ("spec", "provider", side),
                          f"Provider {ns}/{name} is not the Plan's {side} Provider "
                          f"{provider.namespace}/{provider.name}; the map is used as the Plan names it")

    def storage_entry(self, obj: InputObject, i: int, entry: Mapping[str, Any]) -> dict[str, Any]:
        path: DocPath = ("spec", "map", i)
        src = entry["source"]
        name = src.get("name")
        if not name:
            if not src.get("id"):
                raise obj.error((*path, "source"), "Required value: name or id (a storage class)")
            name = self.resolve(obj, (*path, "source", "id"), "StorageClass", str(src["id"]))[1]
        for key in ("type", "namespace"):
            if src.get(key):
                self.warn(obj, (*path, "source", key), f"{IGNORED} (a storage class has no {key})")
        if entry.get("offloadPlugin"):
            self.warn(obj, (*path, "offloadPlugin"), IGNORED)
        dest = entry["destination"]
        out_dest = {"storageClass": dest["storageClass"]}
        for key in ("accessMode", "volumeMode"):
            if dest.get(key):
                out_dest[key] = dest[key]
        return {"source": str(name), "destination": out_dest}

    def unique_storage(self, obj: InputObject, entries: list[dict[str, Any]]) -> None:
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if entry["source"] in seen:
                raise obj.error(("spec", "map", i, "source"),
                                f"storage class {entry['source']!r} is mapped twice "
                                f"(also spec.map[{seen[entry['source']]}])")
            seen[entry["source"]] = i

    def network_entry(self, obj: InputObject, i: int, entry: Mapping[str, Any]) -> dict[str, Any]:
        path: DocPath = ("spec", "map", i)
        src, dest = entry["source"], entry["destination"]
        if src.get("vlan"):
            self.warn(obj, (*path, "source", "vlan"), IGNORED)
        source: dict[str, Any]
        src_type = src.get("type") or ""
        if src_type == "pod":
            source = {"type": "pod"}
        elif src_type not in ("", "multus"):
            raise obj.error((*path, "source", "type"), f"{src_type}: an openshift source network "
                                                       "is pod or multus")
        elif src.get("name"):
            source = {"type": "multus", "name": _qualified(src.get("namespace"), str(src["name"]))}
        elif src.get("id"):
            ns, name = self.resolve(obj, (*path, "source", "id"), "NetworkAttachmentDefinition",
                                    str(src["id"]))
            source = {"type": "multus", "name": _qualified(ns, name)}
        else:
            raise obj.error((*path, "source"), "Required value: type pod, or the name or id of a "
                                               "network attachment definition")
        kind = dest["type"]
        destination: dict[str, Any] = {"type": kind}
        if kind == "multus":
            if not dest.get("name"):
                raise obj.error((*path, "destination", "name"), "Required value (type multus)")
            destination["name"] = _qualified(dest.get("namespace"), str(dest["name"]))
        else:
            for key in ("name", "namespace"):
                if dest.get(key):
                    self.warn(obj, (*path, "destination", key), f"not used with type {kind}; ignored")
        return {"source": source, "destination": destination}


def _qualified(namespace: Any, name: str) -> str:
    """``namespace/name`` as KubeVirt's ``multus.networkName`` (just ``name`` without one)."""
    return f"{namespace}/{name}" if namespace and "/" not in name else name
