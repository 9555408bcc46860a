"""Kubernetes label and field selectors, parsed once and matched against plain dict objects.

Label selectors support ``=``, ``==``, ``!=``, ``in (...)``, ``notin (...)``, ``key`` and ``!key``.
Field selectors support ``=``, ``==`` and ``!=`` on any dotted path (``metadata.name``,
``metadata.namespace``, ``status.phase``); a missing field compares as ``""``. Set-based field
selectors do not exist upstream and are not accepted here either.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from statemachine.errors import PermanentClusterError

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


def field_value(obj: Obj, path: str) -> str:
    """The value at a dotted path as a selector compares it (missing → ``""``, bools lower-case)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_matcher(selector: str | None) -> Matcher | None:
    """A predicate over objects for a field selector string; ``None`` for an empty selector."""
    if not selector:
        return None
    checks: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        for op in ("!=", "==", "="):
            if op in term:
                path, _, value = term.partition(op)
                checks.append((path.strip(), op != "!=", value.strip()))
                break
        else:
            raise _bad(selector, term)

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
