"""The shape of the Forklift objects the importer reads, checked by hand before anything is used.

These are not copies of Forklift's CRDs: they list the fields of ``forklift.konveyor.io/v1beta1``
Plan, NetworkMap, StorageMap, Hook and Provider (and the core Secret fields read for
credentials) with the types and enums the CRDs give them, so that a value of the wrong type is
one error line naming the file and field (exit 2) instead of a crash or a wrong plan. Fields a
CRD has and the importer does not use are listed too, with their types, so that they are checked
and so that ``convert`` can tell "known, no smrun equivalent" from "not a Forklift field".

:func:`check` stops at the first problem (one line, as product.md §5 asks). ``tests`` cross-check
:data:`PLAN`'s types and enums against the upstream Plan CRD when it is available.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from statemachine.forklift.documents import InputObject
from statemachine.yamlsource import DocPath, json_type_name

__all__ = ["API_VERSION", "SHAPES", "Arr", "Bool", "Enum", "Int", "Obj", "Open", "Shape", "Str",
           "StrMap", "check"]

API_VERSION = "forklift.konveyor.io/v1beta1"


class Shape:
    """A value's expected form; :meth:`problem` returns ``(path, message)`` or ``None``."""

    json_type = ""

    def problem(self, value: Any, path: DocPath) -> tuple[DocPath, str] | None:
        raise NotImplementedError


def _wrong_type(value: Any, path: DocPath, want: str) -> tuple[DocPath, str]:
    return path, f"must be of type {want} (got {json_type_name(value, python_names=True)})"


@dataclass(frozen=True)
class _Scalar(Shape):
    json_type: str = "string"

    def problem(self, value: Any, path: DocPath) -> tuple[DocPath, str] | None:
        if self.json_type == "string" and isinstance(value, str):
            return None
        if self.json_type == "boolean" and isinstance(value, bool):
            return None
        if self.json_type == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return None
        return _wrong_type(value, path, self.json_type)


Str = _Scalar("string")
Bool = _Scalar("boolean")
Int = _Scalar("integer")


@dataclass(frozen=True)
class Enum(Shape):
    """A string with a fixed set of values (the CRD's ``enum``)."""

    values: tuple[str, ...]
    json_type: str = "string"

    def problem(self, value: Any, path: DocPath) -> tuple[DocPath, str] | None:
        if not isinstance(value, str):
            return _wrong_type(value, path, "string")
        if value not in self.values:
            allowed = ", ".join(f'"{v}"' for v in self.values)
            return path, f'Unsupported value: "{value}": supported values: {allowed}'
        return None


@dataclass(frozen=True)
class Open(Shape):
    """An object whose inside the importer never reads (affinity, offload plugins...)."""

    json_type: str = "object"

    def problem(self, value: Any, path: DocPath) -> tuple[DocPath, str] | None:
        return None if isinstance(value, Mapping) else _wrong_type(value, path, "object")


@dataclass(frozen=True)
class StrMap(Shape):
    """``map[string]string`` (labels, node selectors, provider settings, Secret data)."""

    json_type: str = "object"

    def problem(self, value: Any, path: DocPath) -> tuple[DocPath, str] | None:
        if not isinstance(value, Mapping):
            return _wrong_type(value, path, "object")
        for key, item in value.items():
            if not isinstance(item, str):
                return _wrong_type(item, (*path, str(key)), "string")
        return None


@dataclass(frozen=True)
class Arr(Shape):
    items: Shape
    json_type: str = "array"

    def problem(self, value: Any, path: DocPath) -> tuple[DocPath, str] | None:
        if not isinstance(value, list):
            return _wrong_type(value, path, "array")
        for i, item in enumerate(value):
            found = self.items.problem(item, (*path, i))
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class Obj(Shape):
    """An object with known fields; fields not listed are let through (``convert`` names them)."""

    fields: Mapping[str, Shape]
    required: tuple[str, ...] = ()
    json_type: str = "object"
    nonempty: tuple[str, ...] = field(default=())
    """Required fields that must also be non-empty strings (names the importer looks up)."""

    def problem(self, value: Any, path: DocPath) -> tuple[DocPath, str] | None:
        if not isinstance(value, Mapping):
            return _wrong_type(value, path, "object")
        for key in self.required:
            if key not in value or value[key] is None:
                return (*path, key), "Required value"
        for key in self.nonempty:
            if key in value and value[key] == "":
                return (*path, key), "Required value (empty)"
        for key, shape in self.fields.items():
            if key in value and value[key] is not None:
                found = shape.problem(value[key], (*path, key))
                if found is not None:
                    return found
        return None


def _ref(*required: str) -> Obj:
    """A ``core.ObjectReference`` (Forklift's references to Providers, maps, hooks, Secrets)."""
    return Obj({k: Str for k in ("apiVersion", "kind", "name", "namespace", "uid",
                                 "resourceVersion", "fieldPath")},
               required=required, nonempty=required)


_PROVIDER_PAIR = Obj({"source": _ref("name"), "destination": _ref("name")},
                     required=("source", "destination"))
_POWER = Enum(("on", "off", "auto"))

VM = Obj({
    "id": Str, "name": Str, "namespace": Str, "type": Str, "targetName": Str,
    "hooks": Arr(Obj({"step": Str, "hook": _ref("name")}, required=("step", "hook"),
                     nonempty=("step",))),
    "luks": _ref(), "rootDisk": Str, "instanceType": Str, "pvcNameTemplate": Str,
    "volumeNameTemplate": Str, "networkNameTemplate": Str, "targetPowerState": _POWER,
    "nbdeClevis": Bool, "deleteVmOnFailMigration": Bool, "enableNestedVirtualization": Bool,
    "migrateSharedDisks": Bool, "rdmAsLun": Bool, "scsiReservation": Bool,
})
"""One entry of ``Plan.spec.vms``."""

PLAN_SPEC = Obj({
    "type": Enum(("cold", "warm", "live", "conversion")),
    "warm": Bool,
    "description": Str,
    "provider": _PROVIDER_PAIR,
    "targetNamespace": Str,
    "map": Obj({"network": _ref("name"), "storage": _ref("name")}, required=("network", "storage")),
    "vms": Arr(VM),
    "transferNetwork": _ref(),
    "archived": Bool,
    "serviceAccount": Str,
    "targetPowerState": _POWER,
    "targetLabels": StrMap(), "targetNodeSelector": StrMap(), "targetAffinity": Open(),
    "convertorLabels": StrMap(), "convertorNodeSelector": StrMap(), "convertorAffinity": Open(),
    "conversionTempStorageClass": Str, "conversionTempStorageSize": Str,
    "customizationScripts": _ref(), "tagMapping": Open(),
    "pvcNameTemplate": Str, "pvcNameTemplateUseGenerateName": Bool, "volumeNameTemplate": Str,
    "networkNameTemplate": Str, "preserveClusterCpuModel": Bool, "preserveStaticIPs": Bool,
    "migrateSharedDisks": Bool, "deleteGuestConversionPod": Bool, "deleteVmOnFailMigration": Bool,
    "diskBus": Str, "enableNestedVirtualization": Bool, "installLegacyDrivers": Bool,
    "rdmAsLun": Bool, "runPreflightInspection": Bool, "scsiReservation": Bool,
    "skipGuestConversion": Bool, "skipZoneNodeSelector": Bool, "useCompatibilityMode": Bool,
    "virtV2vImage": Str, "xfsCompatibility": Bool,
}, required=("provider", "map", "targetNamespace", "vms"))
"""``Plan.spec``: every field of the v1beta1 CRD, with its type and enum."""

NETWORK_MAP_SPEC = Obj({
    "provider": _PROVIDER_PAIR,
    "map": Arr(Obj({
        "source": Obj({"id": Str, "name": Str, "namespace": Str, "type": Str, "vlan": Str}),
        "destination": Obj({"type": Enum(("pod", "multus", "ignored")), "name": Str,
                            "namespace": Str}, required=("type",)),
    }, required=("source", "destination"))),
}, required=("map", "provider"))

STORAGE_MAP_SPEC = Obj({
    "provider": _PROVIDER_PAIR,
    "map": Arr(Obj({
        "source": Obj({"id": Str, "name": Str, "namespace": Str, "type": Str}),
        "destination": Obj({
            "storageClass": Str,
            "accessMode": Enum(("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany")),
            "volumeMode": Enum(("Filesystem", "Block")),
        }, required=("storageClass",), nonempty=("storageClass",)),
        "offloadPlugin": Open(),
    }, required=("source", "destination"))),
}, required=("map", "provider"))

HOOK_SPEC = Obj({"image": Str, "playbook": Str, "serviceAccount": Str, "deadline": Int,
                 "aap": Open()})

PROVIDER_SPEC = Obj({"type": Str, "url": Str, "secret": _ref(), "settings": StrMap()},
                    required=("type", "secret"), nonempty=("type",))

MIGRATION_SPEC = Obj({
    "plan": _ref("name"), "cutover": Str,
    "vmCutover": Arr(Obj({"id": Str, "cutover": Str}, required=("id", "cutover"))),
    "cancel": Arr(Obj({"id": Str, "name": Str, "namespace": Str, "type": Str})),
    "resumeConversion": Bool,
}, required=("plan",))

_META = Obj({"name": Str, "namespace": Str, "uid": Str, "labels": StrMap(),
             "annotations": StrMap()}, required=("name",), nonempty=("name",))

SHAPES: Mapping[tuple[str, str], Obj] = {
    (API_VERSION, "Plan"): Obj({"metadata": _META, "spec": PLAN_SPEC}, required=("metadata", "spec")),
    (API_VERSION, "NetworkMap"): Obj({"metadata": _META, "spec": NETWORK_MAP_SPEC},
                                     required=("metadata", "spec")),
    (API_VERSION, "StorageMap"): Obj({"metadata": _META, "spec": STORAGE_MAP_SPEC},
                                     required=("metadata", "spec")),
    (API_VERSION, "Hook"): Obj({"metadata": _META, "spec": HOOK_SPEC}, required=("metadata", "spec")),
    (API_VERSION, "Provider"): Obj({"metadata": _META, "spec": PROVIDER_SPEC},
                                   required=("metadata", "spec")),
    (API_VERSION, "Migration"): Obj({"metadata": _META, "spec": MIGRATION_SPEC},
                                    required=("metadata", "spec")),
    ("v1", "Secret"): Obj({"metadata": _META, "data": StrMap(), "stringData": StrMap(),
                           "type": Str}, required=("metadata",)),
}
"""The checked shape of every kind the importer reads, by (apiVersion, kind)."""

FORKLIFT_KINDS = ("Plan", "NetworkMap", "StorageMap", "Hook", "Provider", "Migration")


def check(obj: InputObject) -> None:
    """Raise ``DefinitionError`` (exit 2, one line naming file and field) unless ``obj`` has the
    shape of its kind. Kinds without a shape here (inventory objects, unknown kinds) only need
    ``apiVersion``, ``kind`` and ``metadata.name``."""
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.data.get(key), str) or not obj.data.get(key):
            raise obj.error((key,), "Required value")
    group = obj.api_version.split("/", 1)[0]
    if group == "forklift.konveyor.io" and obj.api_version != API_VERSION \
            and obj.kind in FORKLIFT_KINDS:
        raise obj.error(("apiVersion",), f"{obj.api_version}: only {API_VERSION} is supported")
    shape = SHAPES.get((obj.api_version, obj.kind)) or Obj({"metadata": _META}, required=("metadata",))
    found = shape.problem(obj.data, ())
    if found is not None:
        raise obj.error(*found)
