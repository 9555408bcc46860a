"""Field sets in the ``FieldsV1`` notation of ``metadata.managedFields``, and what server-side apply
computes with them.

A field set is kept exactly as it is serialized (a trie of nested dicts), so the stored
``managedFields`` need no conversion:

- ``f:<name>`` a field of a struct or map; ``k:<json of the key fields>`` an item of an
  associative list; ``v:<json value>`` an item of a set list;
- a node is a member of the set when it is ``{}`` (a leaf) or when it holds ``"."`` (it has
  members below it too); a node with children and no ``"."`` only leads to members.

Functions: the set of an object (:func:`set_of`), the difference between two versions of an
object (:func:`compare`), set algebra (:func:`union`, :func:`difference`, :func:`intersection`),
paths in structured-merge-diff's string form (:func:`path_strings`), and removing the members of
a set from an object (:func:`remove`). Which lists are associative comes from ``fieldtypes``.

Not here: manager entries and conflicts (``managedfields.py``), merging an applied configuration
into the live object (``patches.apply_merge``).
"""
from __future__ import annotations

import json
from typing import Any

from statemachine.sim.fieldtypes import ATOMIC, Rule, Rules

Trie = dict[str, Any]

#: Metadata fields the apiserver never tracks (structured-merge-diff's strip set).
UNTRACKED_META = frozenset(("name", "namespace", "creationTimestamp", "selfLink", "uid",
                            "clusterName", "generation", "managedFields", "resourceVersion",
                            "deletionTimestamp", "deletionGracePeriodSeconds"))
#: Go struct fields that are never nil in a built-in object, so a write never "adds" them as a
#: whole (no ``"."`` on them); any other map that a write adds is owned as a node too.
_GO_STRUCTS = frozenset(("metadata", "spec", "status", "template", "resources"))

_MISSING = object()


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


class Schema:
    """What the set functions need to know about one kind: its list rules and whether it is a
    built-in kind (Go structs) or a custom resource (plain JSON)."""

    __slots__ = ("rules", "builtin")

    def __init__(self, rules: Rules, builtin: bool) -> None:
        self.rules = rules
        self.builtin = builtin

    def rule(self, path: str) -> Rule:
        return self.rules.get(path, ATOMIC)

    def map_is_atomic(self, path: str) -> bool:
        rule = self.rules.get(path)
        return rule is not None and rule.list_type == "atomic"

    def owns_added_map(self, path: str) -> bool:
        last = path.rpartition(".")[2]
        return path != "metadata" and not (self.builtin and last in _GO_STRUCTS)


def item_key(item: Any, rule: Rule) -> str | None:
    """``k:{...}`` of an associative list item, or ``None`` when it lacks every key."""
    if not isinstance(item, dict):
        return None
    fields = {}
    defaults = dict(rule.key_defaults)
    for name in rule.keys:
        value = item.get(name, defaults.get(name, _MISSING))
        if value is not _MISSING:
            fields[name] = value
    return "k:" + _dump(fields) if fields else None


def _keyed_items(items: list[Any], rule: Rule) -> dict[str, Any] | None:
    """The items of an associative list by key; ``None`` if some item has no key."""
    out: dict[str, Any] = {}
    for item in items:
        key = item_key(item, rule)
        if key is None:
            return None
        out[key] = item
    return out


def _top(obj: dict[str, Any], scope: str) -> dict[str, Any]:
    """The tracked top-level fields: ``scope`` "status" tracks only status, "main" all but status
    (when the kind has a status subresource), "all" everything."""
    out = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if scope == "status" and key != "status" or scope == "main" and key == "status":
            continue
        if key == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in UNTRACKED_META}
            if not value:
                continue
        out[key] = value
    return out


# ------------------------------------------------------------------ the set of an object
def set_of(obj: dict[str, Any], schema: Schema, scope: str = "all") -> Trie:
    """The fields an applied configuration sets (associative and set list items are owned as
    nodes; maps are owned through their fields)."""
    return _map_set(_top(obj, scope), schema, "", False)


def _value_set(value: Any, schema: Schema, path: str, whole: bool) -> Trie | None:
    """The set of one value; ``whole`` marks every map and list item as a member (a subtree a
    write added). ``None``: an empty granular list, which owns nothing (an empty map is owned
    itself, as upstream's field sets do). Tries are built in upstream's serialization order
    (``"."`` first, then sorted)."""
    if isinstance(value, dict):
        if not value or schema.map_is_atomic(path):
            return {}
        return _map_set(value, schema, path, whole, whole and schema.owns_added_map(path))
    if isinstance(value, list):
        out = _list_set(value, schema, path, whole, whole)
        return out if out or whole or schema.rule(path).list_type == "atomic" else None
    return {}


def _map_set(value: dict[str, Any], schema: Schema, path: str, whole: bool,
             member: bool = False) -> Trie:
    prefix = f"{path}." if path else ""
    out: Trie = {".": {}} if member else {}
    for k in sorted(value):
        sub = _value_set(value[k], schema, prefix + k, whole)
        if sub is not None:
            out[f"f:{k}"] = sub
    return {} if member and len(out) == 1 else out


def _list_set(items: list[Any], schema: Schema, path: str, whole: bool,
              member: bool = False) -> Trie:
    rule = schema.rule(path)
    if not items or rule.list_type == "atomic":
        return {}
    out: Trie = {".": {}} if member else {}
    if rule.list_type == "set":
        for key in sorted({"v:" + _dump(v) for v in items}):
            out[key] = {}
        return out
    keyed = _keyed_items(items, rule)
    if keyed is None:
        return {}
    for key in sorted(keyed):
        item = keyed[key]
        out[key] = _map_set(item, schema, path, whole, True) if isinstance(item, dict) else {}
    return out


# ------------------------------------------------------------------ comparing two versions
def compare(old: dict[str, Any], new: dict[str, Any], schema: Schema,
            scope: str = "all") -> tuple[Trie, Trie]:
    """``(changed, removed)``: the fields ``new`` adds or modifies relative to ``old`` (added
    subtrees whole), and the fields of ``old`` that ``new`` no longer has."""
    return _compare_map(_top(old, scope), _top(new, scope), schema, "")


def _compare_map(old: dict[str, Any], new: dict[str, Any], schema: Schema,
                 path: str) -> tuple[Trie, Trie]:
    changed: Trie = {}
    removed: Trie = {}
    prefix = f"{path}." if path else ""
    for key in sorted(new):
        value = new[key]
        before = old.get(key, _MISSING)
        if before is _MISSING:
            changed[f"f:{key}"] = _value_set(value, schema, prefix + key, True) or {}
        elif before != value:
            c, r = _compare_value(before, value, schema, prefix + key)
            if c is not None:
                changed[f"f:{key}"] = c
            if r:
                removed[f"f:{key}"] = r
    for key, value in old.items():
        if key not in new:
            removed[f"f:{key}"] = _value_set(value, schema, prefix + key, True) or {}
    return changed, removed


def _compare_value(old: Any, new: Any, schema: Schema, path: str) -> tuple[Trie | None, Trie]:
    """Two different values at ``path``: ``(changed or None, removed)``."""
    if isinstance(old, dict) and isinstance(new, dict) and not schema.map_is_atomic(path):
        c, r = _compare_map(old, new, schema, path)
        return (c or None), r
    if isinstance(old, list) and isinstance(new, list):
        rule = schema.rule(path)
        if rule.list_type == "set":
            before = {"v:" + _dump(v) for v in old}
            after = {"v:" + _dump(v) for v in new}
            return ({k: {} for k in after - before} or None), {k: {} for k in before - after}
        if rule.list_type == "map":
            a, b = _keyed_items(old, rule), _keyed_items(new, rule)
            if a is not None and b is not None:
                return _compare_items(a, b, schema, path, rule)
    return {}, {}


def _compare_items(old: dict[str, Any], new: dict[str, Any], schema: Schema, path: str,
                   rule: Rule) -> tuple[Trie | None, Trie]:
    changed: Trie = {}
    removed: Trie = {}
    for key in sorted(new):
        item = new[key]
        before = old.get(key, _MISSING)
        if before is _MISSING:
            changed[key] = _list_set([item], schema, path, True).get(key, {})
        elif before != item:
            if isinstance(before, dict) and isinstance(item, dict):
                c, r = _compare_map(before, item, schema, path)
            else:
                c, r = {}, {}
            if c:
                changed[key] = c
            if r:
                removed[key] = r
    for key, item in old.items():
        if key not in new:
            removed[key] = _list_set([item], schema, path, True).get(key, {})
    return (changed or None), removed


# ------------------------------------------------------------------ set algebra
def _member(node: Trie) -> bool:
    return not node or "." in node


def union(a: Trie, b: Trie) -> Trie:
    """Every member of the sets ``a`` or ``b`` (whole sets: their roots are never members;
    subtrees may be shared with the arguments; keys stay in serialization order)."""
    if not a:
        return b
    if not b:
        return a
    return _union(a, b)


def _union(a: Trie, b: Trie) -> Trie:
    member = _member(a) or _member(b)
    out: Trie = {".": {}} if member else {}
    for key, sub in a.items():
        if key != ".":
            out[key] = sub
    added = False
    for key, sub in b.items():
        if key == ".":
            continue
        if key in out:
            out[key] = _union(out[key], sub)
        else:
            out[key] = sub
            added = True
    if member and len(out) == 1:
        return {}
    if added:
        out = {k: out[k] for k in sorted(out)}  # "." sorts first
    return out


def difference(a: Trie, b: Trie) -> Trie | None:
    """The members of ``a`` that are not members of ``b`` (``None`` when nothing is left;
    ``a`` itself when it loses nothing)."""
    a_member = _member(a)
    member = a_member and not _member(b)
    out: Trie | None = None
    for key, other in b.items():
        if key == ".":
            continue
        sub = a.get(key)
        if sub is None:
            continue
        rest = difference(sub, other)
        if rest is not sub:
            if out is None:
                out = dict(a)
            if rest is None:
                del out[key]
            else:
                out[key] = rest
    if out is None:
        if member or not a_member:
            return a
        out = dict(a)
    if not member:
        out.pop(".", None)
    if not out or list(out) == ["."]:
        return {} if member else None
    return out


def intersection(a: Trie, b: Trie) -> Trie | None:
    """The members of both ``a`` and ``b`` (``None`` when there are none)."""
    member = _member(a) and _member(b)
    out: Trie = {}
    for key, sub in a.items():
        if key != "." and key in b:
            both = intersection(sub, b[key])
            if both is not None:
                out[key] = both
    if not out:
        return {} if member else None
    if member:
        out["."] = {}
    return out


def prunable(removing: Trie, others: Trie) -> Trie | None:
    """The part of ``removing`` whose nodes ``others`` has nothing at or below: a node another
    manager owns, or owns something inside, stays (only its unowned members go)."""
    out: Trie = {}
    for key, sub in removing.items():
        if key == ".":
            continue
        theirs = others.get(key)
        if theirs is None:
            out[key] = sub
        else:
            rest = prunable(sub, theirs)
            if rest:
                out[key] = rest
    return out or None


def members(trie: Trie, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every member of ``trie`` as a tuple of path elements, parents before children."""
    out: list[tuple[str, ...]] = []
    if prefix and _member(trie):
        out.append(prefix)
    for key, sub in trie.items():
        if key != ".":
            out.extend(members(sub, prefix + (key,)))
    return out


def path_string(path: tuple[str, ...]) -> str:
    """structured-merge-diff's string form: ``.spec.containers[name="nginx"].image``."""
    parts = []
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            parts.append(f".{rest}")
        elif kind == "k":
            fields = json.loads(rest)
            parts.append("[" + ",".join(f"{k}={_dump(v)}" for k, v in fields.items()) + "]")
        elif kind == "v":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)


# ------------------------------------------------------------------ removing fields
def remove(obj: dict[str, Any], trie: Trie, schema: Schema) -> None:
    """Remove the members of ``trie`` from ``obj`` in place; maps and lists that become empty
    by it go too (a built-in object would drop them when serialized)."""
    _remove_in(obj, trie, schema, "")


def _remove_in(value: Any, trie: Trie, schema: Schema, path: str) -> None:
    prefix = f"{path}." if path else ""
    for key, sub in trie.items():
        if key == ".":
            continue
        if key.startswith("f:") and isinstance(value, dict):
            name = key[2:]
            if name not in value:
                continue
            if _member(sub):
                del value[name]
                continue
            child = value[name]
            _remove_in(child, sub, schema, prefix + name)
            if isinstance(child, (dict, list)) and not child:
                del value[name]
        elif key.startswith("k:") and isinstance(value, list):
            rule = schema.rule(path)
            for i, item in enumerate(value):
                if item_key(item, rule) == key:
                    if _member(sub):
                        del value[i]
                    else:
                        _remove_in(item, sub, schema, path)
                    break
        elif key.startswith("v:") and isinstance(value, list):
            target = json.loads(key[2:])
            value[:] = [v for v in value if v != target]
