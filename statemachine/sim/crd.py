"""CustomResourceDefinitions: ``apiextensions.k8s.io/v1`` objects that make kinds served.

- :func:`attach` (once per store, at start-up): subscribes to the store so that every CRD
  committed (created or changed) serves its kinds at once (each served version is a
  :class:`~statemachine.sim.kinds.Kind` carrying the version's names, scope, subresources,
  printer columns, selectable fields and structural schema), and installs the built-in
  CRDs of the custom kinds it serves (:func:`builtin_crds`): KubeVirt/CDI schemas come from the
  shipped upstream data; the others (NetworkAttachmentDefinition, ServiceExport) keep whatever
  is sent.
- :func:`admit_crd` (the admission of a CRD write): defaults ``spec.names`` and the rest as
  kube-apiserver does, refuses what it refuses (422 with causes), and sets ``status``
  (``NamesAccepted``, ``Established``, ``acceptedNames``, ``storedVersions``).
- :func:`delete` (the API's delete of a CRD): deletes every object of its kinds, stops serving
  them, then removes the CRD. (Upstream does this asynchronously behind the
  ``customresourcecleanup.apiextensions.k8s.io`` finalizer; here it is done before the answer.)
- :func:`scale_get` / :func:`scale_update`: the ``scale`` subresource (``autoscaling/v1`` Scale).

Not implemented: conversion between versions (each served version is stored apart, see
docs/simulator.md), CEL validation rules, name conflicts between CRDs (NamesAccepted is always
True).
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any

from statemachine.errors import PermanentClusterError
from statemachine.sim import admission, schemas
from statemachine.sim.kinds import KINDS, Kind
from statemachine.sim.store import Obj, Store, StoreEvent, now_rfc3339
from statemachine.sim.structural import FieldError, StructuralSchema

CRD_KIND = "CustomResourceDefinition"
GROUP = "apiextensions.k8s.io"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


# ----------------------------------------------------------------------------- kinds of a CRD

def kinds_of(crd: Obj) -> list[Kind]:
    """One Kind per served version of ``crd`` (assumed admitted: names defaulted)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    kind_name = names.get("kind", "")
    out = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        sub = version.get("subresources") or {}
        raw = (version.get("schema") or {}).get("openAPIV3Schema")
        scale = sub.get("scale")
        out.append(Kind(
            group=spec.get("group", ""), version=version.get("name", ""), kind=kind_name,
            plural=names.get("plural", ""), singular=names.get("singular") or kind_name.lower(),
            namespaced=spec.get("scope") != "Cluster",
            status_subresource="status" in sub,
            short_names=tuple(names.get("shortNames") or ()),
            list_kind=names.get("listKind") or f"{kind_name}List", custom=True,
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            selectable_fields=tuple(f.get("jsonPath", "") for f in
                                    version.get("selectableFields") or ()),
            categories=tuple(names.get("categories") or ()),
            schema=StructuralSchema(raw) if isinstance(raw, dict) else None,
            scale=(scale.get("specReplicasPath", ""), scale.get("statusReplicasPath", ""),
                   scale.get("labelSelectorPath", "")) if isinstance(scale, dict) else None,
            deprecation=(version.get("deprecationWarning") or
                         f"{spec.get('group', '')}/{version.get('name', '')} {kind_name} is "
                         "deprecated") if version.get("deprecated") else ""))
    return out


def attach(store: Store) -> None:
    """Serve the kinds of every CRD the store holds or will hold; install the built-in CRDs."""
    served: dict[str, list[Kind]] = {}  # CRD name -> the kinds it serves now

    installing = False

    def on_event(event: StoreEvent) -> None:
        if event.kind.kind != CRD_KIND or event.kind.group != GROUP:
            return
        name = event.obj["metadata"]["name"]
        before = served.pop(name, [])
        now = [] if event.type == "DELETED" else kinds_of(event.obj)
        keep = {(k.group, k.version, k.plural) for k in now}
        for kind in before:
            if (kind.group, kind.version, kind.plural) not in keep:
                store.remove_kind(kind)
        for kind in now:
            current = store.registry.by_resource(kind.group, kind.version, kind.plural)
            # An unchanged definition keeps its Kind object: open watches compare by identity.
            # A built-in kind installed by its own CRD keeps its Kind too (same data; its
            # schema is compiled once per process, not once per cluster).
            if current is None or (not installing and _differs(current, kind)):
                store.add_kind(kind)
        if now:
            served[name] = [store.registry.by_resource(k.group, k.version, k.plural) or k
                            for k in now]

    store.subscribe(on_event)
    installing = True
    try:
        for crd in _builtin_templates():
            name = crd["metadata"]["name"]
            if store.try_get(CRD_KIND, None, name) is None:
                # The schemas are large: stores share them (never changed in place).
                store.install(CRD_KIND, {**crd, "metadata": json.loads(json.dumps(
                    crd["metadata"])), "status": json.loads(json.dumps(crd["status"]))})
    finally:
        installing = False


def _differs(a: Kind, b: Kind) -> bool:
    fields = ("kind", "singular", "namespaced", "status_subresource", "short_names", "list_kind",
              "printer_columns", "selectable_fields", "categories", "scale", "deprecation")
    if any(getattr(a, f) != getattr(b, f) for f in fields):
        return True
    if a.schema is None and b.schema is not None and a.custom:
        return b.schema.raw != schemas.kind_schema(a.api_version, a.kind)
    return (a.schema is None) != (b.schema is None) or (
        a.schema is not None and b.schema is not None and a.schema.raw != b.schema.raw)


# ----------------------------------------------------------------------------- built-in CRDs

@functools.lru_cache(maxsize=1)
def _builtin_templates() -> tuple[Obj, ...]:
    """The built-in CRDs, built once per process. Shared: never mutate them (``store.create``
    copies what it stores)."""
    out = []
    for kind in KINDS:
        if not kind.custom:  # every custom kind is a CRD on a real cluster too
            continue
        raw = schemas.kind_schema(kind.api_version, kind.kind)
        version: dict[str, Any] = {
            "name": kind.version, "served": True, "storage": True,
            "schema": {"openAPIV3Schema": raw if raw is not None else {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
        if kind.status_subresource:
            version["subresources"] = {"status": {}}
        if kind.printer_columns:
            version["additionalPrinterColumns"] = list(kind.printer_columns)
        names: dict[str, Any] = {"kind": kind.kind, "listKind": kind.list_kind_name(),
                                 "plural": kind.plural, "singular": kind.singular}
        if kind.short_names:
            names["shortNames"] = list(kind.short_names)
        if kind.categories:
            names["categories"] = list(kind.categories)
        crd = {"apiVersion": f"{GROUP}/v1", "kind": CRD_KIND,
               "metadata": {"name": f"{kind.plural}.{kind.group}",
                            "labels": _labels(kind.group)},
               "spec": {"group": kind.group, "names": names,
                        "scope": "Namespaced" if kind.namespaced else "Cluster",
                        "versions": [version], "conversion": {"strategy": "None"}}}
        crd["status"] = _status(crd, None)
        out.append(crd)
    return tuple(out)


def _labels(group: str) -> dict[str, str]:
    """The label the installing operator puts on its CRDs (kubevirt-fidelity.md §1.1)."""
    if group == "cdi.kubevirt.io":
        return {"cdi.kubevirt.io": ""}
    return {"kubevirt.io": ""} if group.endswith("kubevirt.io") else {}


def builtin_crds() -> list[Obj]:
    """Fresh copies of the CRDs of the KubeVirt/CDI kinds the simulator serves."""
    return [json.loads(json.dumps(crd)) for crd in _builtin_templates()]


# ----------------------------------------------------------------------------- admission

def _status(crd: Obj, old: Obj | None) -> Obj:
    spec = crd["spec"]
    stamp = now_rfc3339()
    previous = {c.get("type"): c for c in ((old or {}).get("status") or {}).get("conditions") or []}

    def condition(ctype: str, reason: str, message: str) -> dict[str, Any]:
        since = previous.get(ctype, {}).get("lastTransitionTime") or stamp
        return {"type": ctype, "status": "True", "lastTransitionTime": since, "reason": reason,
                "message": message}

    stored = list(((old or {}).get("status") or {}).get("storedVersions") or [])
    for version in spec.get("versions") or []:
        if version.get("storage") and version.get("name") not in stored:
            stored.append(version["name"])
    return {"conditions": [condition("NamesAccepted", "NoConflicts", "no conflicts found"),
                           condition("Established", "InitialNamesAccepted",
                                     "the initial names have been accepted")],
            "acceptedNames": dict(spec.get("names") or {}), "storedVersions": stored}


def _default(crd: Obj) -> None:
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict) and isinstance(names.get("kind"), str):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec.get("versions") or []:
        if isinstance(version, dict):
            version.setdefault("served", True)
            version.setdefault("storage", False)


def _validate(crd: Obj, old: Obj | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = crd.get("spec")
    name = crd["metadata"].get("name", "")
    if not isinstance(spec, dict):
        return [("FieldValueRequired", "spec", "Required value")]
    group, names = spec.get("group"), spec.get("names")
    if not isinstance(group, str) or not group:
        errors.append(("FieldValueRequired", "spec.group", "Required value"))
    elif "." not in group:
        errors.append(("FieldValueInvalid", "spec.group",
                       f'Invalid value: "{group}": should be a domain with at least one dot'))
    if not isinstance(names, dict):
        errors.append(("FieldValueRequired", "spec.names", "Required value"))
        names = {}
    for field in ("plural", "kind"):
        if not names.get(field):
            errors.append(("FieldValueRequired", f"spec.names.{field}", "Required value"))
    plural = names.get("plural") or ""
    for field in ("plural", "singular"):
        value = names.get(field)
        if isinstance(value, str) and value and not _DNS_LABEL.match(value):
            errors.append(("FieldValueInvalid", f"spec.names.{field}",
                           f'Invalid value: "{value}": a lowercase RFC 1123 label must consist '
                           "of lower case alphanumeric characters or '-', and must start and "
                           "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                           "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))
    if isinstance(group, str) and plural and name != f"{plural}.{group}":
        errors.append(("FieldValueInvalid", "metadata.name",
                       f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        errors.append(("FieldValueRequired", "spec.scope", "Required value") if scope is None else
                      ("FieldValueNotSupported", "spec.scope",
                       f'Unsupported value: {json.dumps(scope)}: supported values: "Cluster", '
                       '"Namespaced"'))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        errors.append(("FieldValueInvalid", "spec.versions",
                       "Invalid value: null: must have exactly one version marked as storage "
                       "version"))
        versions = []
    elif sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        errors.append(("FieldValueInvalid", "spec.versions",
                       f"Invalid value: {json.dumps(versions, separators=(',', ':'))[:200]}: "
                       "must have exactly one version marked as storage version"))
    for i, version in enumerate(versions):
        path = f"spec.versions[{i}]"
        if not isinstance(version, dict) or not version.get("name"):
            errors.append(("FieldValueRequired", f"{path}.name", "Required value"))
            continue
        raw = (version.get("schema") or {}).get("openAPIV3Schema")
        schema_path = f"{path}.schema.openAPIV3Schema"
        if not isinstance(raw, dict):
            errors.append(("FieldValueRequired", schema_path,
                           "Required value: schemas are required"))
        elif raw.get("type") != "object":
            errors.append(("FieldValueInvalid", f"{schema_path}.type",
                           f"Invalid value: {json.dumps(raw.get('type'))}: must be object at "
                           "the root"))
        fields = version.get("selectableFields") or []
        if len(fields) > 8:
            errors.append(("FieldValueTooMany", f"{path}.selectableFields",
                           f"Too many: {len(fields)}: must have at most 8 items"))
    if old is not None and (old.get("spec") or {}).get("scope") != spec.get("scope"):
        errors.append(("FieldValueInvalid", "spec.scope",
                       f"Invalid value: {json.dumps(spec.get('scope'))}: field is immutable"))
    return errors


def admit_crd(kind: Kind, new: Obj, old: Obj | None, subresource: str | None) -> None:
    """Admission of a CRD written through the API: default, validate (422), set status."""
    if subresource == "status":
        return
    _default(new)
    errors = _validate(new, old)
    if errors:
        raise admission.invalid(kind, new["metadata"].get("name", ""), errors)
    new["status"] = _status(new, old)


def is_crd(obj: Obj) -> bool:
    return obj.get("kind") == CRD_KIND and obj.get("apiVersion") == f"{GROUP}/v1"


def seed(store: Store, crds: list[Obj]) -> None:
    """Create seeded CRDs as the API would (defaulted, validated, with status); a CRD the API
    would refuse raises ``Invalid``."""
    kind = store.kind(f"{GROUP}/v1/{CRD_KIND}")
    for obj in crds:
        body = json.loads(json.dumps(obj))
        body.setdefault("metadata", {})
        admit_crd(kind, body, None, None)
        store.create(kind, body, keep_status=True)


def seed_kinds(objects: list[Obj]) -> set[tuple[str, str]]:
    """``(apiVersion, kind)`` of every kind the CRDs among ``objects`` define (for seed checks)."""
    out = set()
    for obj in objects:
        spec = obj.get("spec")
        if not is_crd(obj) or not isinstance(spec, dict) or not isinstance(spec.get("names"), dict):
            continue  # malformed: refused when the seed is created
        for kind in kinds_of({"spec": {**spec, "versions": [
                v for v in spec.get("versions") or [] if isinstance(v, dict)]}}):
            out.add((kind.api_version, kind.kind))
    return out


# ----------------------------------------------------------------------------- delete

def delete(store: Store, name: str, *, dry_run: bool = False) -> Obj:
    """Delete the CRD ``name``: its objects first, then its kinds, then the CRD itself."""
    crd = store.get(CRD_KIND, None, name)
    if dry_run:
        return crd
    for kind in kinds_of(crd):
        current = store.registry.by_resource(kind.group, kind.version, kind.plural)
        if current is None:
            continue
        for obj in store.list(current):
            meta = obj["metadata"]
            if meta.get("finalizers"):
                store.mutate(current, meta.get("namespace"), meta["name"],
                             lambda o: o["metadata"].pop("finalizers", None))
            if store.try_get(current, meta.get("namespace"), meta["name"]) is not None:
                store.delete(current, meta.get("namespace"), meta["name"])
    return store.delete(CRD_KIND, None, name)


# ----------------------------------------------------------------------------- scale

def _path(obj: Obj, json_path: str) -> Any:
    node: Any = obj
    for part in [p for p in json_path.split(".") if p]:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _set_path(obj: Obj, json_path: str, value: Any) -> None:
    parts = [p for p in json_path.split(".") if p]
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def scale_get(store: Store, kind: Kind, namespace: str, name: str) -> Obj:
    """The ``autoscaling/v1`` Scale of a custom resource."""
    assert kind.scale is not None
    obj = store.get(kind, namespace, name)
    spec_path, status_path, selector_path = kind.scale
    meta = obj["metadata"]
    out: Obj = {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                  "creationTimestamp") if k in meta},
                "spec": {}, "status": {"replicas": _path(obj, status_path) or 0}}
    replicas = _path(obj, spec_path)
    if replicas is not None:
        out["spec"]["replicas"] = replicas
    if selector_path:
        selector = _path(obj, selector_path)
        if selector is not None:
            out["status"]["selector"] = selector
    return out


def scale_update(store: Store, kind: Kind, namespace: str, name: str, body: Obj,
                 *, dry_run: bool = False) -> Obj:
    """Set the replicas of a custom resource from a (patched) Scale ``body``."""
    assert kind.scale is not None
    replicas = (body.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise admission.invalid(
            Kind(group="autoscaling", version="v1", kind="Scale", plural="scale",
                 singular="scale", namespaced=True), name,
            [("FieldValueInvalid", "spec.replicas",
              f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0")])
    precondition = (body.get("metadata") or {}).get("resourceVersion")
    current = store.get(kind, namespace, name)
    if precondition and precondition != current["metadata"]["resourceVersion"]:
        raise PermanentClusterError(
            f'Operation cannot be fulfilled on {kind.qualified_resource} "{name}": the object '
            "has been modified; please apply your changes to the latest version and try again",
            status=409, reason="Conflict")
    _set_path(current, kind.scale[0], replicas)
    store.replace(kind, current, namespace=namespace, dry_run=dry_run)
    return scale_get(store, kind, namespace, name)
