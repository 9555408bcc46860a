"""Patch algorithms the simulated API server applies: JSON merge patch (RFC 7386) and JSON patch
(RFC 6902).

Strategic merge patch (built-in kinds only; custom resources get 415 as from a real apiserver) is
approximated without the Go struct tags: maps merge as in a merge patch; a list of objects that
all carry the same identifying key (``name``, ``mountPath``, ``containerPort``, ``type``) is merged
element by element on that key (``$patch: delete`` removes one, ``$setElementOrder/<field>``
orders them); any other list is replaced; other ``$`` directives are dropped. That covers what
kubectl apply/label/annotate send for ConfigMaps, Secrets, Jobs and PVCs. Pure functions over
JSON values; inputs are never mutated.
"""
from __future__ import annotations

import copy
from typing import Any

from statemachine.errors import Invalid


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


MERGE_KEYS = ("name", "mountPath", "containerPort", "type")


def _merge_key(a: list[Any], b: list[Any]) -> str | None:
    items = a + b
    if not b or not all(isinstance(i, dict) for i in items):
        return None
    return next((k for k in MERGE_KEYS if all(k in i for i in items)), None)


def _merge_list(target: list[Any], patch: list[Any], order: Any) -> list[Any]:
    key = _merge_key(target, patch)
    if key is None:
        return [strategic_merge_patch(None, p) for p in patch]
    out = {item[key]: copy.deepcopy(item) for item in target}
    for item in patch:
        if item.get("$patch") == "delete":
            out.pop(item[key], None)
        else:
            out[item[key]] = strategic_merge_patch(out.get(item[key]), item)
    if isinstance(order, list):
        ranked = [o.get(key) for o in order if isinstance(o, dict)]
        return sorted(out.values(), key=lambda i: ranked.index(i[key]) if i[key] in ranked
                      else len(ranked))
    return list(out.values())


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A merge patch that merges lists of keyed objects (see the module docstring)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value, patch.get(f"$setElementOrder/{key}"))
        else:
            out[key] = strategic_merge_patch(out.get(key), value)
    return out


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise Invalid(f"invalid JSON pointer {path!r}", status=422, reason="Invalid")
    return [_unescape(t) for t in path[1:].split("/")]


def _walk(doc: Any, tokens: list[str], path: str) -> Any:
    """The value at ``tokens`` below ``doc``; 422 when any step does not exist."""
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            raise Invalid(f"jsonpatch: path {path!r} does not exist", status=422, reason="Invalid")
    return cur


def _parent(doc: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    return _walk(doc, tokens[:-1], path), tokens[-1]


def _get(doc: Any, path: str) -> Any:
    return _walk(doc, _pointer(path), path)


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise Invalid("jsonpatch: cannot remove the root", status=422, reason="Invalid")
    parent, key = _parent(doc, tokens, path)
    if isinstance(parent, dict) and key in parent:
        return parent.pop(key)
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        return parent.pop(int(key))
    raise Invalid(f"jsonpatch: unable to remove nonexistent key {path!r}", status=422,
                  reason="Invalid")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, key = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        if key == "-":
            parent.append(value)
        elif key.isdigit() and int(key) <= len(parent):
            parent.insert(int(key), value)
        else:
            raise Invalid(f"jsonpatch: index out of range in {path!r}", status=422,
                          reason="Invalid")
    else:
        raise Invalid(f"jsonpatch: path {path!r} does not exist", status=422, reason="Invalid")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test). Any failure raises ``Invalid`` (422)."""
    if not isinstance(ops, list):
        raise Invalid("json patch body must be a list of operations", status=422,
                      reason="Invalid")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise Invalid(f"jsonpatch: malformed operation {op!r}", status=422, reason="Invalid")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            value = _get(doc, op.get("from", ""))
            if kind == "move":
                _remove(doc, op["from"])
            doc = _add(doc, path, copy.deepcopy(value))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise Invalid(f"jsonpatch: test failed at {path!r}", status=422, reason="Invalid")
        else:
            raise Invalid(f"jsonpatch: unknown operation {kind!r}", status=422, reason="Invalid")
    return doc
