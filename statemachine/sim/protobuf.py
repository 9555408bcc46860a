"""Decoding of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

kubectl's typed clientset sends built-in kinds as protobuf: ``kubectl create configmap|secret|
namespace|serviceaccount|service|role|rolebinding|...``, ``kubectl create token``, ``kubectl auth can-i``
and ``kubectl auth whoami``. A body is the magic ``k8s\\x00`` followed by a ``runtime.Unknown``
(typeMeta{apiVersion=1, kind=2}, raw=2, contentEncoding=3, contentType=4) whose ``raw`` is the
object's message (apiserver-fidelity.md §11). :func:`decode_object` turns it into the dict the JSON
decoder would have produced: field names as in JSON, ``bytes`` as base64, Time as RFC 3339, and
zero values of non-pointer fields left out (Go's ``omitempty``), so the rest of the server cannot
tell the two encodings apart.

The protobuf wire format (varints, length-delimited fields, fixed 32/64-bit values) is decoded by
hand: there is no maintained Python package that ships the Kubernetes messages, and the handful
needed here are kept as data in :data:`MESSAGES` (field number -> JSON name and type, from
kubernetes/api ``generated.proto`` at v0.32). Unknown field numbers are skipped, as protobuf
decoders do. Responses are never protobuf: every client that sends protobuf also accepts JSON.

It does not encode protobuf, and kinds without an entry in :data:`MESSAGES` raise
:class:`Unsupported` (answered 415).
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Iterator
from typing import Any

from statemachine.sim.kinds import Kind

MAGIC = b"k8s\x00"
_ZERO_TIME = -62135596800  # Go's time.Time{} as Unix seconds


class DecodeError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf message (upstream: 400)."""


class Unsupported(DecodeError):
    """A well-formed envelope around a kind this simulator has no message table for."""


# A field's type: "string", "bytes", "bool", "int", "time", "fields" (FieldsV1: raw JSON),
# "intstr" (IntOrString: a number or a string),
# "map:string", "map:bytes", a message name from MESSAGES; a leading "[]" makes it repeated, a
# trailing "?" marks a Go pointer field, whose zero value is kept (it was sent on purpose).
_META = ("metadata", "ObjectMeta")
MESSAGES: dict[str, dict[int, tuple[str, str]]] = {
    "ObjectMeta": {1: ("name", "string"), 2: ("generateName", "string"),
                   3: ("namespace", "string"), 4: ("selfLink", "string"), 5: ("uid", "string"),
                   6: ("resourceVersion", "string"), 7: ("generation", "int"),
                   8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
                   10: ("deletionGracePeriodSeconds", "int?"), 11: ("labels", "map:string"),
                   12: ("annotations", "map:string"),
                   13: ("ownerReferences", "[]OwnerReference"), 14: ("finalizers", "[]string"),
                   17: ("managedFields", "[]ManagedFieldsEntry")},
    "OwnerReference": {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                       5: ("apiVersion", "string"), 6: ("controller", "bool?"),
                       7: ("blockOwnerDeletion", "bool?")},
    "ManagedFieldsEntry": {1: ("manager", "string"), 2: ("operation", "string"),
                           3: ("apiVersion", "string"), 4: ("time", "time"),
                           6: ("fieldsType", "string"), 7: ("fieldsV1", "fields"),
                           8: ("subresource", "string")},
    # core/v1
    "ConfigMap": {1: _META, 2: ("data", "map:string"), 3: ("binaryData", "map:bytes"),
                  4: ("immutable", "bool?")},
    "Secret": {1: _META, 2: ("data", "map:bytes"), 3: ("type", "string"),
               4: ("stringData", "map:string"), 5: ("immutable", "bool?")},
    "Namespace": {1: _META, 2: ("spec", "NamespaceSpec"), 3: ("status", "NamespaceStatus")},
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "NamespaceStatus": {1: ("phase", "string"), 2: ("conditions", "[]NamespaceCondition")},
    "NamespaceCondition": {1: ("type", "string"), 2: ("status", "string"),
                           4: ("lastTransitionTime", "time"), 5: ("reason", "string"),
                           6: ("message", "string")},
    "ServiceAccount": {1: _META, 2: ("secrets", "[]ObjectReference"),
                       3: ("imagePullSecrets", "[]LocalObjectReference"),
                       4: ("automountServiceAccountToken", "bool?")},
    "Service": {1: _META, 2: ("spec", "ServiceSpec")},  # status (3) is the server's
    "ServiceSpec": {1: ("ports", "[]ServicePort"), 2: ("selector", "map:string"),
                    3: ("clusterIP", "string"), 4: ("type", "string"),
                    5: ("externalIPs", "[]string"), 7: ("sessionAffinity", "string"),
                    8: ("loadBalancerIP", "string"), 9: ("loadBalancerSourceRanges", "[]string"),
                    10: ("externalName", "string"), 11: ("externalTrafficPolicy", "string"),
                    12: ("healthCheckNodePort", "int"), 13: ("publishNotReadyAddresses", "bool"),
                    14: ("sessionAffinityConfig", "SessionAffinityConfig"),
                    17: ("ipFamilyPolicy", "string?"), 18: ("clusterIPs", "[]string"),
                    19: ("ipFamilies", "[]string"), 20: ("allocateLoadBalancerNodePorts", "bool?"),
                    21: ("loadBalancerClass", "string?"), 22: ("internalTrafficPolicy", "string?"),
                    23: ("trafficDistribution", "string?")},
    "ServicePort": {1: ("name", "string"), 2: ("protocol", "string"), 3: ("port", "int"),
                    4: ("targetPort", "intstr"), 5: ("nodePort", "int"),
                    6: ("appProtocol", "string?")},
    "SessionAffinityConfig": {1: ("clientIP", "ClientIPConfig")},
    "ClientIPConfig": {1: ("timeoutSeconds", "int?")},
    "ObjectReference": {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string"),
                        4: ("uid", "string"), 5: ("apiVersion", "string"),
                        6: ("resourceVersion", "string"), 7: ("fieldPath", "string")},
    "LocalObjectReference": {1: ("name", "string")},
    # authentication/v1
    "TokenRequest": {1: _META, 2: ("spec", "TokenRequestSpec"),
                     3: ("status", "TokenRequestStatus")},
    "TokenRequestSpec": {1: ("audiences", "[]string"), 3: ("boundObjectRef", "BoundObjectReference"),
                         4: ("expirationSeconds", "int?")},
    "BoundObjectReference": {1: ("kind", "string"), 2: ("apiVersion", "string"),
                             3: ("name", "string"), 4: ("uid", "string")},
    "TokenRequestStatus": {1: ("token", "string"), 2: ("expirationTimestamp", "time")},
    "SelfSubjectReview": {1: _META},  # status (2) is the server's answer
    # authorization/v1
    "SelfSubjectAccessReview": {1: _META, 2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "string"), 2: ("verb", "string"),
                           3: ("group", "string"), 4: ("version", "string"),
                           5: ("resource", "string"), 6: ("subresource", "string"),
                           7: ("name", "string"), 8: ("fieldSelector", "SelectorAttributes"),
                           9: ("labelSelector", "SelectorAttributes")},
    "SelectorAttributes": {1: ("rawSelector", "string"),
                           2: ("requirements", "[]SelectorRequirement")},
    "SelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"),
                            3: ("values", "[]string")},
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
    "SelfSubjectRulesReview": {1: _META, 2: ("spec", "SelfSubjectRulesReviewSpec")},
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string")},
    # rbac.authorization.k8s.io/v1
    "Role": {1: _META, 2: ("rules", "[]PolicyRule")},
    "ClusterRole": {1: _META, 2: ("rules", "[]PolicyRule"),
                    3: ("aggregationRule", "AggregationRule")},
    "AggregationRule": {1: ("clusterRoleSelectors", "[]LabelSelector")},
    "LabelSelector": {1: ("matchLabels", "map:string"),
                      2: ("matchExpressions", "[]SelectorRequirement")},
    "PolicyRule": {1: ("verbs", "[]string"), 2: ("apiGroups", "[]string"),
                   3: ("resources", "[]string"), 4: ("resourceNames", "[]string"),
                   5: ("nonResourceURLs", "[]string")},
    "RoleBinding": {1: _META, 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {1: _META, 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "string"), 2: ("apiGroup", "string"), 3: ("name", "string"),
                4: ("namespace", "string")},
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
    # runtime and meta/v1 helpers
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "raw"), 3: ("contentEncoding", "string"),
                4: ("contentType", "string")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "IntOrString": {1: ("type", "int"), 2: ("intVal", "int"), 3: ("strVal", "string")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "MapEntry": {1: ("key", "raw"), 2: ("value", "raw")},
    "FieldsV1": {1: ("raw", "raw")},
}

# --------------------------------------------------------------------------- the wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("unexpected EOF")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("proto: integer overflow")


def fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """``(field number, value)`` for each field of one message: an int for varint and fixed
    fields, bytes for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError(f"proto: illegal tag 0 (wire type {wire})")
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise DecodeError("unexpected EOF")
            value, pos = buf[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(buf):
                raise DecodeError("unexpected EOF")
            value, pos = int.from_bytes(buf[pos:pos + size], "little"), pos + size
        else:
            raise DecodeError(f"proto: illegal wireType {wire}")
        yield number, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise DecodeError("proto: wrong wireType for a string field")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("proto: invalid UTF-8 in a string field") from None


def _raw(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError("proto: wrong wireType for a length-delimited field")
    return value


# --------------------------------------------------------------------------- messages -> JSON


def _time(buf: bytes) -> str | None:
    t = decode_message(buf, "Time")
    seconds = int(t.get("seconds", 0))
    if seconds in (0, _ZERO_TIME) and not t.get("nanos"):
        return None
    when = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _scalar(ftype: str, value: int | bytes) -> Any:
    if ftype == "string":
        return _text(value)
    if ftype == "bytes":
        return base64.b64encode(_raw(value)).decode()
    if ftype == "raw":
        return _raw(value)
    if ftype in ("bool", "int"):
        if not isinstance(value, int):
            raise DecodeError(f"proto: wrong wireType for a {ftype} field")
        return bool(value) if ftype == "bool" else _signed(value)
    if ftype == "time":
        return _time(_raw(value))
    if ftype == "intstr":
        # intstr.IntOrString is a number or a string in JSON, as its type (1: string) says.
        both = decode_message(_raw(value), "IntOrString")
        return both.get("strVal", "") if both.get("type") == 1 else both.get("intVal", 0)
    if ftype == "fields":
        inner = decode_message(_raw(value), "FieldsV1")
        try:
            return json.loads(inner.get("raw", b"{}") or b"{}")
        except ValueError:
            raise DecodeError("proto: FieldsV1 is not JSON") from None
    if ftype.startswith("map:"):
        entry = decode_message(_raw(value), "MapEntry")
        key = _text(entry.get("key", b""))
        return key, _scalar(ftype[4:], entry.get("value", b""))
    return decode_message(_raw(value), ftype)


def _is_zero(value: Any) -> bool:
    return value in ("", 0, False, None) or value == {} or value == []


def decode_message(buf: bytes, name: str) -> dict[str, Any]:
    """One message of type ``name`` (a :data:`MESSAGES` key) as its JSON dict."""
    table = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, value in fields(buf):
        spec = table.get(number)
        if spec is None:
            continue
        key, ftype = spec
        pointer = ftype.endswith("?")
        ftype = ftype.rstrip("?")
        if ftype.startswith("map:"):
            k, v = _scalar(ftype, value)
            out.setdefault(key, {})[k] = v
        elif ftype.startswith("[]"):
            out.setdefault(key, []).append(_scalar(ftype[2:], value))
        else:
            decoded = _scalar(ftype, value)
            if pointer or not _is_zero(decoded):
                out[key] = decoded
            else:
                out.pop(key, None)
    return out


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """``(apiVersion, kind, raw message)`` of an enveloped body."""
    if not body.startswith(MAGIC):
        raise DecodeError("provided data does not appear to be a protobuf message, expected "
                          "prefix [107 56 115 0]")
    unknown = decode_message(body[len(MAGIC):], "Unknown")
    type_meta = unknown.get("typeMeta") or {}
    if unknown.get("contentEncoding"):
        raise DecodeError(f"unsupported content encoding {unknown['contentEncoding']!r}")
    return type_meta.get("apiVersion", ""), type_meta.get("kind", ""), unknown.get("raw", b"")


def decode_object(body: bytes, kind: Kind) -> dict[str, Any]:
    """The object in an enveloped protobuf ``body`` sent to ``kind``'s endpoint, as JSON would
    carry it (``apiVersion`` and ``kind`` from the envelope, ``kind``'s when absent)."""
    api_version, kind_name, raw = unwrap(body)
    kind_name = kind_name or kind.kind
    if kind_name not in MESSAGES or "metadata" not in {f for f, _ in MESSAGES[kind_name].values()}:
        raise Unsupported(f"no protobuf message table for kind {kind_name!r}")
    obj = {"apiVersion": api_version or kind.api_version, "kind": kind_name}
    obj.update(decode_message(raw, kind_name))
    return obj


def object_name(body: bytes) -> str:
    """``metadata.name`` of an enveloped object (field 1 of every kind with metadata), or ``""``
    when there is none or the body does not decode; for the request log."""
    try:
        _, _, raw = unwrap(body)
        for number, value in fields(raw):
            if number == 1 and isinstance(value, bytes):
                return str(decode_message(value, "ObjectMeta").get("name", ""))
    except DecodeError:
        pass
    return ""
