"""kube-apiserver's object validation for writes that come through the API.

What a real apiserver checks on every create and update, whatever the kind, plus the few
kind-specific rules smrun's objects meet (apiserver-fidelity.md §7):

- ``metadata``: the name rule of the kind (DNS-1123 subdomain for most kinds, DNS-1123 label for
  Namespaces, DNS-1035 label for Services, path segment for RBAC kinds), ``generateName``, label
  keys and values, annotation keys and their total size, owner references, finalizers;
- updates: ``metadata.uid`` is immutable, no new finalizers once deleting, ConfigMap/Secret
  ``immutable``, Secret ``type``, a Job's selector/template/completions, a PVC's spec (only
  ``resources.requests.storage`` of a bound claim may grow, ``volumeName`` may be set once);
- kind rules on create and update: a ConfigMap key in both bags, the keys a Secret's type
  requires, a Service's spec (``servicevalidation.py``: ports, type, cluster IPs, selector,
  affinity, traffic policies; on updates cluster IPs that may not change), a PVC's spec
  and a PersistentVolume's (capacity, access modes, a single volume source)
  (:func:`_kind_causes`);
- which kinds carry ``metadata.generation`` (:func:`tracks_generation`).
- storage's refusal of a create that carries a ``resourceVersion`` (500, no reason:
  :func:`check_create_resource_version`).

Errors are 422 ``Invalid`` with upstream's message, aggregate and ``details.causes``
(:func:`invalid`). Values in messages are formatted as Go's ``%q``/``%v``/``%#v`` would print
them; a Go struct dump (a Job's pod template) is abbreviated, see docs/simulator.md.

What it does not do: schema validation of fields (``openapi.py``), admission webhooks, the
URL/body identity checks (``apiserver.py`` and ``store.py`` answer those with 400), and
per-field rules of kinds smrun does not write (Pod spec updates).
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from statemachine.errors import Invalid, PermanentClusterError
from statemachine.sim.kinds import Kind

Obj = dict[str, Any]
#: (cause reason, field path, message body)
Cause = tuple[str, str, str]

# --------------------------------------------------------------------------- Go-style values


def go_quote(value: str) -> str:
    """Go's ``%q`` of a string (close enough: JSON escaping of a printable string is the same)."""
    return json.dumps(value, ensure_ascii=False)


def go_value(value: Any) -> str:
    """How ``field.Error`` prints a bad value: strings quoted, numbers and bools bare, nil ``null``,
    a string slice as ``[]string{...}``; any other structure as compact JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    return ("FieldValueInvalid", field, f"Invalid value: {go_value(value)}: {detail}")


def required(field: str, detail: str = "") -> Cause:
    return ("FieldValueRequired", field, f"Required value: {detail}" if detail else "Required value")


def forbidden(field: str, detail: str) -> Cause:
    return ("FieldValueForbidden", field, f"Forbidden: {detail}")


def not_supported(field: str, value: Any, supported: list[str]) -> Cause:
    return ("FieldValueNotSupported", field, f"Unsupported value: {go_value(value)}: supported "
                                             f"values: {', '.join(go_quote(s) for s in supported)}")


def too_long(field: str, limit: int) -> Cause:
    return ("FieldValueTooLong", field, f"Too long: may not be more than {limit} bytes")


def duplicate(field: str, value: Any, shown: str | None = None) -> Cause:
    """``field.Duplicate`` (``shown``: a Go struct's ``%#v``, already rendered)."""
    return ("FieldValueDuplicate", field, f"Duplicate value: {shown or go_value(value)}")


def invalid(kind_name: str, group: str, name: str, causes: list[Cause]) -> Invalid:
    """A 422 ``Invalid`` as ``errors.NewInvalid`` builds it: ``<Kind>[.<group>] "<name>" is
    invalid: <aggregate>`` (one error bare, several as ``[a, b]`` without duplicates), and
    ``details`` naming the Kind with one cause per error."""
    lines: list[str] = []
    for _, field, body in causes:
        line = f"{field}: {body}" if field else body
        if line not in lines:
            lines.append(line)
    aggregate = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    qualified = f"{kind_name}.{group}" if group else kind_name
    exc = Invalid(f'{qualified} {go_quote(name)} is invalid: {aggregate}', status=422,
                  reason="Invalid")
    details: dict[str, Any] = {"name": name, "group": group, "kind": kind_name,
                               "causes": [{"reason": r, "message": b, "field": f}
                                          for r, f, b in causes]}
    exc.status_details = {k: v for k, v in details.items() if v}  # type: ignore[attr-defined]
    return exc


def raise_if(kind: Kind, name: str, causes: list[Cause]) -> None:
    if causes:
        raise invalid(kind.kind, kind.group, name, causes)

# --------------------------------------------------------------------------- string rules


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """``validation.RegexError``: the message, the examples (each followed by ``, ``, joined with
    `` or ``) and the regex."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _LABEL_FMT + r"(\." + _LABEL_FMT + ")*"
_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = f"({_QNAME_FMT})?"
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_LABEL_RE = re.compile(_LABEL_FMT)
_SUBDOMAIN_RE = re.compile(_SUBDOMAIN_FMT)
_DNS1035_RE = re.compile(_DNS1035_FMT)
_QNAME_RE = re.compile(_QNAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_CONFIG_KEY_RE = re.compile(_CONFIG_KEY_FMT)

_SUBDOMAIN_MSG = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character", _SUBDOMAIN_FMT, "example.com")
_LABEL_MSG = _regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character", _LABEL_FMT, "my-name", "123-abc")
_DNS1035_MSG = _regex_error(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character", _DNS1035_FMT, "my-name",
    "abc-123")
_QNAME_MSG = _regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character", _QNAME_FMT, "MyName", "my.name", "123-abc")
_LABEL_VALUE_MSG = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character", _LABEL_VALUE_FMT, "MyValue",
    "my_value", "12345")
_CONFIG_KEY_MSG = _regex_error(
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
    _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name")


def dns1123_subdomain(value: str) -> list[str]:
    errs = [_max_len(253)] if len(value) > 253 else []
    if not _SUBDOMAIN_RE.fullmatch(value):
        errs.append(_SUBDOMAIN_MSG)
    return errs


def dns1123_label(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _LABEL_RE.fullmatch(value):
        errs.append(_LABEL_MSG)
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _DNS1035_RE.fullmatch(value):
        errs.append(_DNS1035_MSG)
    return errs


def path_segment(value: str, prefix: bool = False) -> list[str]:
    """``path.IsValidPathSegmentName`` (``prefix``: only the characters, as for generateName)."""
    if not prefix and value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


# Label and annotation keys and values repeat on every object of a kind: their verdicts are
# cached (the rules are pure), which keeps validation to a few dict lookups per write.
@functools.lru_cache(maxsize=8192)
def qualified_name(value: str) -> list[str]:
    """``validation.IsQualifiedName``: an optional DNS subdomain prefix and ``/``, then a name.
    (Cached: callers must not modify the returned list.)"""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + _QNAME_MSG +
                " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    errs: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in dns1123_subdomain(prefix)]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max_len(63))
    if not _QNAME_RE.fullmatch(name):
        errs.append("name part " + _QNAME_MSG)
    return errs


@functools.lru_cache(maxsize=8192)
def label_value(value: str) -> list[str]:
    errs = [_max_len(63)] if len(value) > 63 else []
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


@functools.lru_cache(maxsize=8192)
def config_key(value: str) -> list[str]:
    """``validation.IsConfigMapKey`` (ConfigMap and Secret data keys)."""
    errs = [_max_len(253)] if len(value) > 253 else []
    if not _CONFIG_KEY_RE.fullmatch(value):
        errs.append(_CONFIG_KEY_MSG)
    if value in (".", ".."):
        errs.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs

# --------------------------------------------------------------------------- kinds


def _name_rule(kind: Kind) -> str:
    if kind.group == "" and kind.kind == "Namespace":
        return "label"
    if kind.group == "" and kind.kind == "Service":
        return "dns1035"
    if kind.group == "rbac.authorization.k8s.io":
        return "path"
    return "subdomain"


def name_problems(kind: Kind, value: str, prefix: bool = False) -> list[str]:
    """What the kind's name function says about ``value`` (``prefix``: a generateName, whose
    trailing ``-`` is allowed)."""
    rule = _name_rule(kind)
    if rule == "path":
        return path_segment(value, prefix)
    if prefix and len(value) > 1 and value.endswith("-"):
        value = value[:-2] + "a"  # upstream's maskTrailingDash
    if rule == "label":
        return dns1123_label(value)
    if rule == "dns1035":
        return dns1035_label(value)
    return dns1123_subdomain(value)


#: Kinds whose registry sets ``metadata.generation`` (apiserver-fidelity.md §7.6): custom
#: resources and the workload kinds. ConfigMaps, Secrets, Namespaces, PVCs, Services, Events,
#: ServiceAccounts, RBAC objects and StorageClasses have none.
_GENERATION_BUILTINS = frozenset({("", "Pod"), ("batch", "Job")})


def tracks_generation(kind: Kind) -> bool:
    return kind.custom or (kind.group, kind.kind) in _GENERATION_BUILTINS


TOTAL_ANNOTATION_SIZE = 256 * 1024
MAX_DATA_SIZE = 1024 * 1024
_ORPHAN, _FOREGROUND = "orphan", "foregroundDeletion"


def _metadata_causes(meta: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> list[Cause]:
    """Labels, annotations, owner references and finalizers (create and update alike; on an
    update, a field equal to the stored one was already accepted and is not checked again)."""
    causes: list[Cause] = []
    old = old or {}
    labels = meta.get("labels") or {}
    if isinstance(labels, dict) and labels != old.get("labels"):
        for key in sorted(labels):
            causes += [invalid_value("metadata.labels", key, m) for m in qualified_name(key)]
            value = labels[key]
            if isinstance(value, str):
                causes += [invalid_value("metadata.labels", value, m) for m in label_value(value)]
    annotations = meta.get("annotations") or {}
    if isinstance(annotations, dict) and annotations != old.get("annotations"):
        size = 0
        for key in sorted(annotations):
            causes += [invalid_value("metadata.annotations", key, m)
                       for m in qualified_name(key.lower())]
            size += len(key) + len(str(annotations[key] or ""))
        if size > TOTAL_ANNOTATION_SIZE:
            causes.append(too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE))
    refs = meta.get("ownerReferences") or []
    for ref in refs if refs != old.get("ownerReferences") else ():
        if not isinstance(ref, dict):
            continue
        api_version = str(ref.get("apiVersion") or "")
        if not api_version.rpartition("/")[2]:
            causes.append(invalid_value("metadata.ownerReferences.apiVersion", api_version,
                                        "version must not be empty"))
        for fld in ("kind", "name", "uid"):
            if not ref.get(fld):
                causes.append(invalid_value(f"metadata.ownerReferences.{fld}",
                                            str(ref.get(fld) or ""), f"{fld} must not be empty"))
    if meta.get("finalizers") == old.get("finalizers"):
        return causes
    finalizers = [f for f in meta.get("finalizers") or [] if isinstance(f, str)]
    for fin in finalizers:
        causes += [invalid_value("metadata.finalizers", fin, m) for m in qualified_name(fin)]
    if _ORPHAN in finalizers and _FOREGROUND in finalizers:
        causes.append(invalid_value("metadata.finalizers", finalizers,
                                    f"finalizer {_ORPHAN} and {_FOREGROUND} cannot be both set"))
    return causes


def _data_causes(kind: Kind, obj: Obj, old: Obj | None = None) -> list[Cause]:
    if kind.group or kind.kind not in ("ConfigMap", "Secret"):
        return []
    if old is not None and all(obj.get(b) == old.get(b)
                               for b in ("data", "binaryData", "stringData")):
        return []
    causes: list[Cause] = []
    size = 0
    for bag in ("data", "binaryData", "stringData"):
        values = obj.get(bag)
        if not isinstance(values, dict):
            continue
        other = obj.get("binaryData") if kind.kind == "ConfigMap" and bag == "data" else None
        for key in sorted(values):
            causes += [invalid_value(f"{bag}[{key}]", key, m) for m in config_key(key)]
            if isinstance(other, dict) and key in other:
                causes.append(invalid_value(f"data[{key}]", key,
                                            "duplicate of key present in binaryData"))
            size += len(str(values[key] or ""))
    if size > MAX_DATA_SIZE:
        causes.append(too_long("", MAX_DATA_SIZE))
    return causes


#: Secret types whose keys upstream's ValidateSecret requires: type -> [(field, key)], every
#: pair missing from data (stringData folded in) a ``Required value``.
_SECRET_KEYS: dict[str, list[tuple[str, str]]] = {
    "kubernetes.io/dockercfg": [("data[.dockercfg]", ".dockercfg")],
    "kubernetes.io/dockerconfigjson": [("data[.dockerconfigjson]", ".dockerconfigjson")],
    "kubernetes.io/tls": [("data[tls.crt]", "tls.crt"), ("data[tls.key]", "tls.key")],
}
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"


def _secret_causes(obj: Obj) -> list[Cause]:
    """ValidateSecret's per-type rules (the JSON of a docker config is not parsed here)."""
    stype = obj.get("type") or "Opaque"
    keys: dict[str, Any] = {}
    for bag in ("data", "stringData"):
        if isinstance(obj.get(bag), dict):
            keys.update(obj[bag])
    if stype == "kubernetes.io/service-account-token":
        notes = (obj.get("metadata") or {}).get("annotations") or {}
        if not notes.get(SA_NAME_ANNOTATION):
            return [required(f"metadata.annotations[{SA_NAME_ANNOTATION}]")]
        return []
    if stype == "kubernetes.io/basic-auth":
        if "username" not in keys and "password" not in keys:
            return [required("data[username]"), required("data[password]")]
        return []
    if stype == "kubernetes.io/ssh-auth":
        return [] if keys.get("ssh-privatekey") else [required("data[ssh-privatekey]")]
    missing = [required(fld) for fld, key in _SECRET_KEYS.get(stype, []) if key not in keys]
    if missing or stype not in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        return missing
    # The docker config must be a JSON object (Go unmarshals it into a map).
    fld, key = _SECRET_KEYS[stype][0]
    problem = _docker_config_problem(obj, key)
    return [invalid_value(fld, "<secret contents redacted>", problem)] if problem else []


def _docker_config_problem(obj: Obj, key: str) -> str | None:
    """Go's ``json.Unmarshal`` error for a Secret's docker config, or ``None``."""
    import base64
    import binascii

    from statemachine.sim.decode import go_json_error
    plain = (obj.get("stringData") or {}) if isinstance(obj.get("stringData"), dict) else {}
    if key in plain:
        text = str(plain[key])
    else:
        try:
            text = base64.b64decode(str((obj.get("data") or {}).get(key) or ""),
                                    validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None  # not this rule's to report
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return go_json_error(exc)
    if value is None or isinstance(value, dict):
        return None
    found = {bool: "bool", str: "string", list: "array"}.get(type(value), "number")
    return f"json: cannot unmarshal {found} into Go value of type map[string]interface {{}}"


_ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]


def _access_mode_causes(spec: dict[str, Any], missing: str = "") -> list[Cause]:
    """The access-mode rules claims and volumes share: at least one (``missing`` is the claim's
    detail; a volume's Required has none), each a known mode, ReadWriteOncePod alone."""
    modes = spec.get("accessModes") or []
    causes: list[Cause] = []
    if not modes:
        causes.append(required("spec.accessModes", missing))
    causes += [not_supported("spec.accessModes", m, _ACCESS_MODES) for m in modes
               if m not in _ACCESS_MODES]
    if "ReadWriteOncePod" in modes and any(m in _ACCESS_MODES and m != "ReadWriteOncePod"
                                           for m in modes):
        causes.append(forbidden("spec.accessModes",
                                "may not use ReadWriteOncePod with other access modes"))
    return causes


def _pvc_spec_causes(obj: Obj) -> list[Cause]:
    """ValidatePersistentVolumeClaimSpec's rules on access modes, the storage request and the
    volume mode (selectors, class names and data sources are not checked here)."""
    # Imported here: the quantity parser lives with the controllers that also need it.
    from statemachine.sim.controllers.conditions import parse_quantity
    raw = obj.get("spec")
    spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
    causes: list[Cause] = []
    causes += _access_mode_causes(spec, "at least 1 access mode is required")
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        causes.append(required("spec.resources[storage]"))
    elif parse_quantity(requests["storage"]) <= 0:
        causes.append(invalid_value("spec.resources[storage]", str(requests["storage"]),
                                    "must be greater than zero"))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in ("Block", "Filesystem"):
        causes.append(not_supported("spec.volumeMode", mode, ["Block", "Filesystem"]))
    return causes


#: ``PersistentVolumeSource``'s members in the order ValidatePersistentVolumeSpec counts them.
_PV_SOURCES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "flocker",
               "nfs", "rbd", "quobyte", "cephfs", "iscsi", "cinder", "fc", "flexVolume",
               "azureFile", "vsphereVolume", "photonPersistentDisk", "portworxVolume",
               "azureDisk", "scaleIO", "local", "storageos", "csi")


def _go_resource_list(value: Any) -> str:
    """``%#v`` of a ``core.ResourceList``: nil, empty, else its keys (the quantities, Go struct
    dumps, abbreviated to ``{...}``)."""
    if value is None:
        return "core.ResourceList(nil)"
    items = value.items() if isinstance(value, dict) else []
    return "core.ResourceList{" + ", ".join(
        f"{go_quote(str(k))}:resource.Quantity{{...}}" for k, _ in sorted(items)) + "}"


def _pv_spec_causes(obj: Obj) -> list[Cause]:
    """ValidatePersistentVolumeSpec's rules on access modes, capacity, volume mode, reclaim
    policy and the volume source (exactly one; a CSI source's driver and handle); node
    affinity, class names and the sources' own fields other than CSI's are not checked."""
    from statemachine.sim.controllers.conditions import parse_quantity
    raw = obj.get("spec")
    spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
    causes: list[Cause] = []
    causes += _access_mode_causes(spec)
    capacity = spec.get("capacity")
    if not capacity:
        causes.append(required("spec.capacity"))
    if not isinstance(capacity, dict) or "storage" not in capacity or len(capacity) > 1:
        causes.append(("FieldValueNotSupported", "spec.capacity",
                       f"Unsupported value: {_go_resource_list(capacity)}: supported values: "
                       '"storage"'))
    for key, qty in sorted((capacity or {}).items() if isinstance(capacity, dict) else []):
        if parse_quantity(qty) <= 0:
            causes.append(invalid_value(f"spec.capacity[{key}]", str(qty),
                                        "must be greater than zero"))
    mode = spec.get("volumeMode")
    if mode is not None and mode not in ("Block", "Filesystem"):
        causes.append(not_supported("spec.volumeMode", mode, ["Block", "Filesystem"]))
    policy = spec.get("persistentVolumeReclaimPolicy")
    if policy and policy not in ("Delete", "Recycle", "Retain"):
        causes.append(not_supported("spec.persistentVolumeReclaimPolicy", policy,
                                    ["Delete", "Recycle", "Retain"]))
    found = 0
    for source in _PV_SOURCES:
        if spec.get(source) is None:
            continue
        if found:
            causes.append(forbidden(f"spec.{source}", "may not specify more than 1 volume type"))
            continue
        found += 1
        if source == "csi":
            csi = spec["csi"] if isinstance(spec["csi"], dict) else {}
            causes += [required(f"spec.csi.{key}") for key in ("driver", "volumeHandle")
                       if not csi.get(key)]
    if not found:
        causes.append(required("spec", "must specify a volume type"))
    return causes


def _kind_causes(kind: Kind, obj: Obj) -> list[Cause]:
    if kind.group:
        return []
    if kind.kind == "Secret":
        return _secret_causes(obj)
    if kind.kind == "Service":
        # Imported here: the Service rules build on this module's helpers.
        from statemachine.sim import servicevalidation
        return servicevalidation.service_causes(obj)
    if kind.kind == "PersistentVolumeClaim":
        return _pvc_spec_causes(obj)
    if kind.kind == "PersistentVolume":
        return _pv_spec_causes(obj)
    return []


def check_create(kind: Kind, obj: Obj) -> None:
    """Validate an object about to be created (namespace already resolved, name possibly still
    to be generated). Raises 422 ``Invalid``."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    generate = meta.get("generateName") or ""
    causes: list[Cause] = []
    if generate:
        causes += [invalid_value("metadata.generateName", generate, m)
                   for m in name_problems(kind, generate, prefix=True)]
    if not name and not generate:
        causes.append(required("metadata.name", "name or generateName is required"))
    elif name:
        causes += [invalid_value("metadata.name", name, m) for m in name_problems(kind, name)]
    causes += _metadata_causes(meta)
    causes += _data_causes(kind, obj) + _kind_causes(kind, obj)
    raise_if(kind, name or generate, causes)


def check_update(kind: Kind, old: Obj, new: Obj) -> None:
    """Validate the next version ``new`` of ``old`` (server-set metadata already carried over,
    except ``uid``, which is checked here). Raises 422 ``Invalid``."""
    meta, meta_old = new["metadata"], old["metadata"]
    name = meta_old.get("name", "")
    causes: list[Cause] = []
    uid = meta.get("uid")
    if uid and uid != meta_old.get("uid"):
        causes.append(invalid_value("metadata.uid", uid, "field is immutable"))
    causes += _metadata_causes(meta, meta_old)
    if not kind.group and kind.kind in ("ConfigMap", "Secret"):
        causes += _data_causes(kind, new, old) + _immutable_data(kind, old, new)
    elif kind.group == "batch" and kind.kind == "Job":
        causes += _job_update(old, new)
    elif not kind.group and kind.kind == "Service":
        from statemachine.sim import servicevalidation
        causes += servicevalidation.update_causes(old, new)
    if not kind.group and kind.kind == "PersistentVolumeClaim":
        # ValidatePersistentVolumeClaimUpdate: the new claim's own rules, then the update's.
        causes += _pvc_spec_causes(new) + _pvc_update(old, new)
    else:
        causes += _kind_causes(kind, new)
    raise_if(kind, name, causes)


def service_status_causes(obj: Obj) -> list[Cause]:
    """``ValidateServiceStatusUpdate``'s load balancer status rules (a write of
    ``services/status``; ``servicevalidation.status_causes``)."""
    from statemachine.sim import servicevalidation
    return servicevalidation.status_causes(obj)


def no_new_finalizers(old_meta: Mapping[str, Any], new_meta: Mapping[str, Any]) -> list[Cause]:
    """Once an object is being deleted its finalizers may only go away (every writer)."""
    if not old_meta.get("deletionTimestamp"):
        return []
    had = set(old_meta.get("finalizers") or [])
    added = sorted(f for f in new_meta.get("finalizers") or [] if f not in had)
    if not added:
        return []
    return [forbidden("metadata.finalizers", "no new finalizers can be added if the object is "
                                             f"being deleted, found new finalizers {go_value(added)}")]


_IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"


def _immutable_data(kind: Kind, old: Obj, new: Obj) -> list[Cause]:
    causes: list[Cause] = []
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            causes.append(forbidden("immutable", _IMMUTABLE_WHEN_SET))
        if kind.kind == "Secret":
            # stringData is already folded into data (coredefaults.decode).
            if (old.get("data"), old.get("stringData")) != (new.get("data"), new.get("stringData")):
                causes.append(forbidden("data", _IMMUTABLE_WHEN_SET))
        else:
            for bag in ("data", "binaryData"):
                if old.get(bag) != new.get(bag):
                    causes.append(forbidden(bag, _IMMUTABLE_WHEN_SET))
    if kind.kind == "Secret":
        old_type, new_type = old.get("type") or "Opaque", new.get("type") or "Opaque"
        if old_type != new_type:
            causes.append(invalid_value("type", new_type, "field is immutable"))
    return causes


def _go_label_selector(selector: Any) -> str:
    """A LabelSelector as Go's ``%#v`` prints it (map keys sorted, as fmt does)."""
    sel = selector if isinstance(selector, dict) else {}
    labels = sel.get("matchLabels") or {}
    shown = ("map[string]string{" + ", ".join(f"{go_quote(k)}:{go_quote(str(labels[k]))}"
                                               for k in sorted(labels)) + "}"
             if labels else "map[string]string(nil)")
    exprs = sel.get("matchExpressions") or []
    shown_exprs = ("[]v1.LabelSelectorRequirement{...}" if exprs
                   else "[]v1.LabelSelectorRequirement(nil)")
    return f"v1.LabelSelector{{MatchLabels:{shown}, MatchExpressions:{shown_exprs}}}"


def _job_update(old: Obj, new: Obj) -> list[Cause]:
    spec, spec_old = new.get("spec") or {}, old.get("spec") or {}
    causes: list[Cause] = []
    if spec.get("selector") != spec_old.get("selector"):
        causes.append(("FieldValueInvalid", "spec.selector",
                       f"Invalid value: {_go_label_selector(spec.get('selector'))}: "
                       "field is immutable"))
    if spec.get("template") != spec_old.get("template"):
        causes.append(("FieldValueInvalid", "spec.template",
                       "Invalid value: core.PodTemplateSpec{...}: field is immutable"))
    for fld in ("completions", "completionMode", "podFailurePolicy", "backoffLimitPerIndex"):
        if spec.get(fld) != spec_old.get(fld):
            causes.append(invalid_value(f"spec.{fld}", spec.get(fld), "field is immutable"))
    return causes


def _storage(obj: Obj) -> Any:
    return (((obj.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")


def _pvc_update(old: Obj, new: Obj) -> list[Cause]:
    # Imported here: the quantity parser lives with the controllers that also need it.
    from statemachine.sim.controllers.conditions import parse_quantity
    spec_old = json.loads(json.dumps(old.get("spec") or {}))
    spec_new = json.loads(json.dumps(new.get("spec") or {}))
    if not spec_old.get("volumeName"):
        spec_old.pop("volumeName", None)
        spec_new.pop("volumeName", None)
    for spec in (spec_old, spec_new):
        spec.pop("volumeAttributesClassName", None)
    # A class may be set on a claim that had none (the PV controller's retroactive default).
    beta = ((old.get("metadata") or {}).get("annotations") or {}).get(
        "volume.beta.kubernetes.io/storage-class")
    if spec_old.get("storageClassName") is None and spec_new.get("storageClassName") is not None \
            and beta in (None, spec_new["storageClassName"]):
        spec_new.pop("storageClassName")
    bound = ((new.get("status") or old.get("status") or {}).get("phase")) == "Bound"
    if bound:
        for spec in (spec_old, spec_new):
            ((spec.get("resources") or {}).get("requests") or {}).pop("storage", None)
    causes: list[Cause] = []
    if spec_old != spec_new:
        diff = "\n".join(f"  {key}: {json.dumps(spec_old.get(key))} -> {json.dumps(spec_new.get(key))}"
                         for key in sorted(set(spec_old) | set(spec_new))
                         if spec_old.get(key) != spec_new.get(key))
        causes.append(forbidden("spec", "spec is immutable after creation except resources.requests "
                                        f"and volumeAttributesClassName for bound claims\n{diff}"))
    if parse_quantity(_storage(new)) < parse_quantity(_storage(old)):
        causes.append(forbidden("spec.resources.requests.storage",
                                "field can not be less than previous value"))
    mode_old = (old.get("spec") or {}).get("volumeMode")
    mode_new = (new.get("spec") or {}).get("volumeMode")
    if mode_old != mode_new:
        causes.append(invalid_value("volumeMode", mode_new, "field is immutable"))
    return causes


#: Built-in kinds' string-valued maps whose values Go's JSON decoder types: (kind, field) -> the
#: Go type named in its error. ``metadata`` maps are checked for every built-in kind.
_TYPED_MAPS: dict[tuple[str, str], str] = {
    ("ConfigMap", "data"): "string", ("ConfigMap", "binaryData"): "[]uint8",
    ("Secret", "data"): "[]uint8", ("Secret", "stringData"): "string"}
_GO_JSON_NAMES = {bool: "bool", int: "number", float: "number", list: "array", dict: "object"}


def decode_problem(kind: Kind, body: Obj) -> str | None:
    """The error Go's JSON decoder meets first in a built-in kind's body, for the string maps
    smrun writes (ConfigMap/Secret data, labels, annotations): a YAML ``1`` or ``true`` left
    unquoted; and a Service's spec (``servicevalidation.spec_type_problem``: a quoted port
    number). ``None`` when they decode; custom resources are not typed this way.

    Upstream answers 400 ``BadRequest``: ``<Kind> in version "<v>" cannot be handled as a
    <Kind>: json: cannot unmarshal number into Go struct field ConfigMap.data of type string``
    (the struct is the innermost Go type, the field its full JSON path; JSON ``null`` decodes
    to the zero value)."""
    if kind.custom:
        return None
    fields: list[tuple[str, str, str, Any]] = []
    meta = body.get("metadata")
    if isinstance(meta, dict):
        fields += [("ObjectMeta", f"metadata.{name}", "string", meta.get(name))
                   for name in meta if name in ("labels", "annotations")]
    fields += [(kind.kind, name, go_type, body.get(name)) for name in body
               if (go_type := _TYPED_MAPS.get((kind.kind, name))) is not None]
    for struct, path, go_type, value in fields:
        if value is None:
            continue
        if not isinstance(value, dict):
            found = _GO_JSON_NAMES.get(type(value), "string")
            return _unmarshal(kind, found, struct, path, f"map[string]{go_type}")
        for item in value.values():
            if item is not None and not isinstance(item, str):
                return _unmarshal(kind, _GO_JSON_NAMES.get(type(item), "string"), struct, path,
                                  go_type)
    if kind.kind == "Service" and not kind.group:
        from statemachine.sim import servicevalidation
        problem = servicevalidation.spec_type_problem(body)
        if problem:
            return _unmarshal(kind, *problem)
    return None


def _unmarshal(kind: Kind, found: str, struct: str, path: str, go_type: str) -> str:
    return (f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
            f"json: cannot unmarshal {found} into Go struct field {struct}.{path} of type "
            f"{go_type}")


class StorageError(PermanentClusterError):
    """An error the storage layer returns as a plain Go error, not an API status: the handler
    answers 500 with no ``reason`` and no ``details`` (apimachinery's ``ErrorToAPIStatus``)."""

    empty_reason = True
    status_details: dict[str, Any] = {}


RV_ON_CREATE = "resourceVersion should not be set on objects to be created"


def check_create_resource_version(meta: Mapping[str, Any]) -> None:
    """etcd3 storage's create refuses an object that carries a resourceVersion: one that parses
    as an unsigned integer other than 0 (a value that does not parse, such as "-1", passes, as
    upstream's versioner ignores it). Dry runs never reach this check (upstream's dry-run
    storage does not make it). Raises :class:`StorageError` (500)."""
    rv = meta.get("resourceVersion")
    if isinstance(rv, str) and rv.isascii() and rv.isdigit() and int(rv) != 0 \
            and int(rv) < 2 ** 64:
        raise StorageError(RV_ON_CREATE, status=500, reason="")


def path_segment_name(name: str) -> str | None:
    """The 400 message a resource URL's name gets when it is not a valid path segment."""
    problems = path_segment(name)
    if not problems:
        return None
    return f"Name parameter invalid: {go_quote(name)}: {';'.join(problems)}"
