"""Patch algorithms the simulated API server applies: JSON merge patch (RFC 7386), JSON patch
(RFC 6902), strategic merge patch, and the merge step of server-side apply.

Strategic merge patch (built-in kinds only; custom resources get 415 before it is reached) follows
each field's patch strategy and merge key from the ``fieldtypes`` table: lists tagged ``merge``
merge item by item on their merge key (or as a set of scalars), every other list is replaced, maps
merge key by key and ``null`` deletes. Directives: ``$patch: replace`` (a map or list replaced
whole), ``$patch: delete`` (a list item by merge key, or a map), ``$retainKeys`` (unlisted fields
cleared), ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>`` (the final order of
the listed items). A malformed directive is a 400.

Not here: field ownership and conflicts of server-side apply (``managedfields.py``). Pure
functions over JSON values; inputs are never mutated.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from statemachine.errors import Invalid, PermanentClusterError
from statemachine.sim.fieldsets import Schema, item_key
from statemachine.sim.fieldtypes import ATOMIC, Rule, Rules

GENERIC_422 = "the server rejected our request due to an error in our request"


class JsonPatchFailed(Invalid):
    """A JSON patch operation that does not apply. Its message is the patch library's error;
    the API server answers with :meth:`as_status` (upstream wraps the library's error in a
    generic 422: ``the server rejected our request due to an error in our request``, with the
    error as the one ``UnexpectedServerResponse`` cause and no name or kind)."""

    def as_status(self) -> Invalid:
        exc = Invalid(GENERIC_422, status=422, reason="Invalid")
        exc.status_details = {  # type: ignore[attr-defined]
            "causes": [{"reason": "UnexpectedServerResponse", "message": str(self)}]}
        return exc


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


# ------------------------------------------------------------------ strategic merge patch
_ORDER = "$setElementOrder/"
_DELETE_FROM = "$deleteFromPrimitiveList/"


def _bad(message: str) -> PermanentClusterError:
    return PermanentClusterError(message, status=400, reason="BadRequest")


def strategic_merge_patch(target: Any, patch: Any, rules: Rules | None = None) -> Any:
    """Strategic merge patch of ``target`` by ``patch``; ``rules`` (``fieldtypes.rules_for``)
    give each list's strategy and merge key (see the module docstring)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = _smp_map(target if isinstance(target, dict) else {}, patch, rules or {}, "")
    return {} if out is None else out


def _smp_map(target: dict[str, Any], patch: dict[str, Any], rules: Rules,
             path: str) -> dict[str, Any] | None:
    """The merged map, or ``None`` for ``$patch: delete``."""
    directive = patch.get("$patch")
    if directive is not None:
        if directive == "replace":
            return _smp_map({}, {k: v for k, v in patch.items() if k != "$patch"}, rules, path)
        if directive == "delete":
            return None
        raise _bad(f"Unknown patch type: {directive}")
    out = dict(target)
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise _bad("invalid patch: $retainKeys must be a list")
        out = {k: v for k, v in out.items() if k in retain}
    prefix = f"{path}." if path else ""
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            field = key[len(_DELETE_FROM):]
            if not isinstance(value, list):
                raise _bad(f"invalid patch: {key} must be a list")
            if isinstance(out.get(field), list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
            continue
        current = out.get(key)
        if isinstance(value, dict):
            merged = _smp_map(current if isinstance(current, dict) else {}, value, rules,
                              prefix + key)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _smp_list(current if isinstance(current, list) else [], value, rules,
                                 prefix + key)
        else:
            out[key] = value
    for key, order in patch.items():
        if key.startswith(_ORDER) and isinstance(out.get(key[len(_ORDER):]), list):
            field = key[len(_ORDER):]
            out[field] = _ordered(out[field], order, rules.get(prefix + field, ATOMIC))
    return out


def _smp_list(target: list[Any], patch: list[Any], rules: Rules, path: str) -> list[Any]:
    rule = rules.get(path, ATOMIC)
    replace = any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch)
    items = [i for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if replace or not rule.smp_merge:
        return [_fresh(i, rules, path) for i in items
                if not (isinstance(i, dict) and i.get("$patch") == "delete")]
    if not rule.merge_key:
        out = list(target)
        out.extend(v for v in items if v not in out)
        return out
    key = rule.merge_key
    out = list(target)
    for item in items:
        if not isinstance(item, dict) or key not in item:
            raise _bad(f"map: {item} does not contain declared merge key: {key}")
        at = next((i for i, cur in enumerate(out)
                   if isinstance(cur, dict) and cur.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del out[at]
            continue
        merged = _smp_map(out[at] if at is not None else {}, item, rules, path)
        if at is None:
            if merged is not None:
                out.append(merged)
        elif merged is None:
            del out[at]
        else:
            out[at] = merged
    return out


def _fresh(value: Any, rules: Rules, path: str) -> Any:
    """A patch value with nothing to merge into (directives resolved, nulls dropped)."""
    if isinstance(value, dict):
        merged = _smp_map({}, value, rules, path)
        return {} if merged is None else merged
    if isinstance(value, list):
        return _smp_list([], value, rules, path)
    return value


def _ordered(items: list[Any], order: Any, rule: Rule) -> list[Any]:
    """``$setElementOrder``: the listed items in that order, then the others as they were."""
    if not isinstance(order, list):
        raise _bad("invalid patch: $setElementOrder must be a list")
    key = rule.merge_key

    def ident(item: Any) -> Any:
        value = item.get(key) if key and isinstance(item, dict) else item
        return json.dumps(value, sort_keys=True)

    rank = {ident(o): i for i, o in enumerate(order)}
    return sorted(items, key=lambda item: rank.get(ident(item), len(rank)))


# ------------------------------------------------------------------ server-side apply merge
def apply_merge(live: Any, config: Any, schema: Schema, path: str = "") -> Any:
    """The live object with an applied configuration merged in: maps field by field,
    associative lists item by item (new items appended), set lists as a union, anything
    else (scalars, atomic lists and maps) replaced by the configuration's value."""
    if isinstance(config, dict) and isinstance(live, dict) and not schema.map_is_atomic(path):
        merged = dict(live)
        prefix = f"{path}." if path else ""
        for key, value in config.items():
            merged[key] = apply_merge(live[key], value, schema, prefix + key) if key in live \
                else value
        return merged
    if isinstance(config, list) and isinstance(live, list):
        rule = schema.rule(path)
        if rule.list_type == "set":
            return live + [v for v in config if v not in live]
        if rule.list_type == "map":
            mine = {item_key(i, rule): i for i in config}
            if None not in mine:
                items = []
                for item in live:
                    key = item_key(item, rule)
                    if key in mine:
                        items.append(apply_merge(item, mine.pop(key), schema, path))
                    else:
                        items.append(item)
                return items + list(mine.values())
    return config


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchFailed(f"invalid JSON pointer {path!r}", status=422, reason="Invalid")
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
            raise JsonPatchFailed(f"jsonpatch: path {path!r} does not exist", status=422,
                                  reason="Invalid")
    return cur


def _parent(doc: Any, tokens: list[str], path: str) -> tuple[Any, str]:
    return _walk(doc, tokens[:-1], path), tokens[-1]


def _get(doc: Any, path: str) -> Any:
    return _walk(doc, _pointer(path), path)


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise JsonPatchFailed("jsonpatch: cannot remove the root", status=422, reason="Invalid")
    parent, key = _parent(doc, tokens, path)
    if isinstance(parent, dict) and key in parent:
        return parent.pop(key)
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        return parent.pop(int(key))
    raise JsonPatchFailed(f"jsonpatch: unable to remove nonexistent key {path!r}", status=422,
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
            raise JsonPatchFailed(f"jsonpatch: index out of range in {path!r}", status=422,
                          reason="Invalid")
    else:
        raise JsonPatchFailed(f"jsonpatch: path {path!r} does not exist", status=422,
                                  reason="Invalid")
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
            tokens = _pointer(path)
            try:
                parent, key = _parent(doc, tokens, path) if tokens else ({"": doc}, "")
            except JsonPatchFailed:
                raise JsonPatchFailed(f"test operation does not apply: is missing path: {path}: "
                                      "missing value", status=422, reason="Invalid") from None
            current = (parent.get(key) if isinstance(parent, dict) else
                       parent[int(key)] if key.isdigit() and int(key) < len(parent) else None)
            if current != op.get("value"):
                raise JsonPatchFailed(f"testing value {path} failed: test failed", status=422,
                                      reason="Invalid")
        else:
            raise JsonPatchFailed(f"jsonpatch: unknown operation {kind!r}", status=422,
                                  reason="Invalid")
    return doc
