"""Kubernetes label and field selectors, parsed once and matched against plain dict objects.

Label selectors support ``=``, ``==``, ``!=``, ``in (...)``, ``notin (...)``, ``key`` and ``!key``.
Field selectors support ``=``, ``==`` and ``!=`` on a dotted path; a missing field compares as
``""`` (or as the value the registry reports for it, e.g. a Job's ``status.successful`` ``0``).
Set-based field selectors do not exist upstream and are not accepted here either.

Which field labels a kind accepts is the API server's business (:func:`checked_field_selector`,
called for lists, watches and deletecollection): the labels of the kind's field label conversion
function for core kinds and Jobs, ``metadata.name``/``metadata.namespace`` for the rest, plus a
custom kind's ``selectable_fields`` (apiserver-fidelity.md §1). The store's matchers themselves
accept any path, for the simulated controllers.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from statemachine.errors import PermanentClusterError
from statemachine.sim.kinds import Kind

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]
LabelTest = Callable[[Mapping[str, str]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")


def _bad(selector: str, what: str) -> PermanentClusterError:
    return PermanentClusterError(f"unable to parse requirement: {what} in {selector!r}",
                                 status=400, reason="BadRequest")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur))
    return [t.strip() for t in terms if t.strip()]


def _label_term(term: str, selector: str) -> LabelTest:
    m = _SET_RE.match(term)
    if m:
        if m.group(1):
            raise _bad(selector, term)
        key, op = m.group(2), m.group(3)
        values = {v.strip() for v in m.group(4).split(",") if v.strip()}
        if op == "in":
            return lambda labels: key in labels and labels[key] in values
        return lambda labels: key not in labels or labels[key] not in values
    for op in ("!=", "==", "="):
        if op in term:
            key, _, value = term.partition(op)
            key, value = key.strip(), value.strip()
            if not key:
                raise _bad(selector, term)
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = term[1:].strip()
        return lambda labels: key not in labels
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", term):
        raise _bad(selector, term)
    return lambda labels: term in labels


def label_matcher(selector: str | None) -> Matcher | None:
    """A predicate over objects for a label selector string; ``None`` for an empty selector."""
    if not selector:
        return None
    terms = [_label_term(t, selector) for t in _split_terms(selector)]

    def match(obj: Obj) -> bool:
        labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
        return all(t(labels) for t in terms)
    return match


#: Field labels whose registry value is not simply the field at that path: the path to read and
#: the value reported when the field is absent.
_FIELD_SOURCES: dict[str, tuple[str, str]] = {
    "status.successful": ("status.succeeded", "0"),   # Job
    "spec.hostNetwork": ("spec.hostNetwork", "false"),  # Pod
    "source": ("source.component", ""),                 # core Event
}


def field_value(obj: Obj, path: str) -> str:
    """The value at a dotted path as a selector compares it (missing → ``""``, bools lower-case)."""
    path, missing = _FIELD_SOURCES.get(path, (path, ""))
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return missing
        cur = cur.get(part)
    if cur is None:
        return missing
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def _field_terms(selector: str) -> list[tuple[str, str, str]]:
    """``(label, operator, value)`` per term; 400 as ``fields.ParseSelector`` for a term
    without an operator."""
    out: list[tuple[str, str, str]] = []
    for term in _split_terms(selector):
        for op in ("!=", "==", "="):
            if op in term:
                path, _, value = term.partition(op)
                out.append((path.strip(), op, value.strip()))
                break
        else:
            raise PermanentClusterError(f"invalid selector: '{selector}'; can't understand "
                                        f"'{term}'", status=400, reason="BadRequest")
    return out


def field_matcher(selector: str | None) -> Matcher | None:
    """A predicate over objects for a field selector string; ``None`` for an empty selector."""
    if not selector:
        return None
    checks = [(path, op != "!=", value) for path, op, value in _field_terms(selector)]

    def match(obj: Obj) -> bool:
        return all((field_value(obj, p) == v) == eq for p, eq, v in checks)
    return match


def combine(*matchers: Matcher | None) -> Matcher | None:
    """One predicate that holds when every given (non-``None``) predicate holds."""
    active = [m for m in matchers if m is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]
    return lambda obj: all(m(obj) for m in active)


def name_of_field_selector(selector: str | None) -> str | None:
    """The name pinned by ``metadata.name=X`` in a field selector, if any (a lookup shortcut)."""
    if not selector:
        return None
    for term in _split_terms(selector):
        for op in ("==", "="):
            path, sep, value = term.partition(op)
            if sep and path.strip() == "metadata.name" and not path.endswith("!"):
                return value.strip()
    return None


_META = ("metadata.name", "metadata.namespace")
_CONVERTED: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): (*_META, "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                  "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
                  "status.podIPs", "status.nominatedNodeName"),
    ("", "Node"): ("metadata.name", "spec.unschedulable"),
    ("", "ReplicationController"): (*_META, "status.replicas"),
    ("", "Event"): ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                    "involvedObject.uid", "involvedObject.apiVersion",
                    "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                    "reportingComponent", "source", "type", *_META),
    ("", "Namespace"): ("status.phase", "metadata.name"),
    ("", "Secret"): ("type", *_META),
    ("", "Service"): (*_META, "spec.clusterIP", "spec.type"),
    ("batch", "Job"): (*_META, "status.successful"),
}
#: Legacy labels the conversion function rewrites.
_RENAMED = {("", "Pod", "spec.host"): "spec.nodeName"}
_label_cache: dict[tuple[Kind, tuple[str, ...]], frozenset[str]] = {}


def _unsupported(kind: Kind, label: str) -> str:
    if kind.group == "batch" and kind.kind == "Job":
        return f'field label "{label}" not supported for batchv1.Job'
    if (kind.group, kind.kind) in _CONVERTED or kind.custom:
        return f"field label not supported: {label}"
    return (f'"{label}" is not a known field selector: only "metadata.name", '
            '"metadata.namespace"')


def _supported(kind: Kind) -> frozenset[str]:
    key = (kind, kind.selectable_fields)
    labels = _label_cache.get(key)
    if labels is None:
        fixed = _CONVERTED.get((kind.group, kind.kind), _META)
        extra = (p[1:] if p.startswith(".") else p for p in kind.selectable_fields) \
            if kind.custom else ()
        labels = _label_cache[key] = frozenset((*fixed, *extra))
    return labels


def checked_field_selector(kind: Kind, selector: str | None) -> str | None:
    """``selector`` as the API server lets it through for ``kind``: 400 ``BadRequest`` with the
    conversion function's message for a label the kind does not support; legacy labels
    rewritten (``spec.host`` → ``spec.nodeName`` on Pods)."""
    if not selector:
        return selector
    supported = _supported(kind)
    rewritten: list[str] = []
    changed = False
    for label, op, value in _field_terms(selector):
        new = _RENAMED.get((kind.group, kind.kind, label))
        if new is not None:
            label, changed = new, True
        if label not in supported:
            raise PermanentClusterError(_unsupported(kind, label), status=400,
                                        reason="BadRequest")
        rewritten.append(f"{label}{op}{value}")
    return ",".join(rewritten) if changed else selector
