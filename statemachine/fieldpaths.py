"""Field paths below a read of a known kind, checked against the kind's schema (issue 15 item 5).

``reads.sourceVM.spec.template.spec.volumez`` in an expression is lenient at run time: a missing
field is undefined, and ``| default([])`` makes it an empty list, so a misspelt field loops zero
times and the run fails states later with an unrelated error. ``unknown_fields(source, kind,
reads)`` finds each literal path rooted at a read (``reads.NAME`` followed by ``.field``,
``['field']`` and ``[0]``, up to the first filter, call, test or operator) and walks it through
the field names of the read's kind (``statemachine/sim/data/kind-fields.json``: KubeVirt, CDI and a
few core kinds; ``scripts/gen_kind_fields.py``). A name the schema does not list where it lists
every field is a message with a "did you mean" (difflib over the names it lists).

Decisions recorded here, so that it never flags what can be there:

- The walk stops, flagging nothing further, at a map with free keys (``metadata.labels``,
  ``annotations``, resource lists, ConfigMap ``data``), at an object that keeps unknown fields,
  at a scalar, at a name on a list (not a field lookup), at a name that is a ``dict`` method
  (``x.items`` is the method, as the docs say), at a subscript that is not a literal
  (``[item]``), and at a kind the table does not have. A read with ``forEach`` is a list: its
  paths start with an index.
- Names tested with ``is defined`` and filtered through ``| default`` are checked too: a name
  that no version of the schema has is a mistake either way. A field newer than the shipped
  schema is reached with ``.get('name')`` (a method call is not checked).
- Only ``reads.NAME...`` is followed: loop variables, ``item``, ``values.X`` and ``object`` have
  no kind known before the run (the run-time check of ``forEach`` covers an undefined value:
  :func:`statemachine.render.for_each_items`).

It evaluates nothing and talks to no cluster.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal

from statemachine.names import lexed

__all__ = ["KindOfRead", "read_paths", "unknown_fields"]

#: A read's ``(apiVersion, kind, is a list)``: a read with ``forEach`` is a list of objects.
KindOfRead = tuple[str, str, bool]
Segment = str | int

_DICT_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))


@lru_cache(maxsize=4096)
def read_paths(source: str, kind: Literal["expression", "template"]
               ) -> tuple[tuple[str, tuple[Segment, ...]], ...]:
    """``(read name, path below it)`` for every literal path rooted at ``reads``, in source
    order, without repeats: ``reads.vm.spec.volumes[0].name`` is ``("vm", ("spec", "volumes", 0,
    "name"))``. A method call's name is not part of the path (``reads.vm.spec.get('x')`` is
    ``("vm", ("spec",))``)."""
    if "reads" not in source:
        return ()
    tokens = lexed(source, kind)
    found: dict[tuple[str, tuple[Segment, ...]], None] = {}
    for i, (tok, value) in enumerate(tokens):
        if tok != "name" or value != "reads" or (i > 0 and tokens[i - 1] == ("operator", ".")):
            continue
        path = _segments(tokens, i + 1)
        if path and isinstance(path[0], str):
            found[(path[0], tuple(path[1:]))] = None
    return tuple(found)


def _segments(tokens: tuple[tuple[str, str], ...], j: int) -> list[Segment]:
    out: list[Segment] = []
    n = len(tokens)
    while j < n:
        if tokens[j] == ("operator", ".") and j + 1 < n and tokens[j + 1][0] == "name":
            if j + 2 < n and tokens[j + 2] == ("operator", "("):
                break  # a method: reads.vm.spec.get('x')
            out.append(tokens[j + 1][1])
            j += 2
        elif (tokens[j] == ("operator", "[") and j + 2 < n and tokens[j + 2] == ("operator", "]")
              and tokens[j + 1][0] in ("string", "integer")):
            kind, raw = tokens[j + 1]
            if kind == "string":
                out.append(raw[1:-1])
            else:
                out.append(int(raw.replace("_", "")))
            j += 3
        else:
            break
    return out


def _first_unknown(node: Any, path: tuple[Segment, ...]) -> tuple[int, list[str]] | None:
    """``(index of the unknown name in path, the names known there)``, or None."""
    for k, seg in enumerate(path):
        if not isinstance(node, dict):
            return None  # a scalar, a map, an open object: nothing to check below
        if "i" in node:
            if not isinstance(seg, int):
                return None  # a name on a list is no field lookup the schema can judge
            node = node["i"]
            continue
        if isinstance(seg, int) or seg in _DICT_METHODS:
            return None
        props: dict[str, Any] = node["p"]
        if seg not in props:
            return k, sorted(props)
        node = props[seg]
    return None


def _shown(path: tuple[Segment, ...]) -> str:
    return "".join(f"[{seg}]" if isinstance(seg, int) else f".{seg}" for seg in path)


def unknown_fields(source: str | None, kind: Literal["expression", "template"],
                   reads: Mapping[str, KindOfRead]) -> list[str]:
    """One message per path that names a field its read's kind does not have, e.g.
    ``unknown field reads.sourceVM.spec.template.spec.volumez: a kubevirt.io/v1 VirtualMachine's
    spec.template.spec has no field 'volumez' (did you mean 'volumes'?)``."""
    if not source or not reads:
        return []
    out: list[str] = []
    for name, path in read_paths(source, kind):
        if name not in reads or not path:
            continue
        api_version, kind_name, is_list = reads[name]
        tree = _table().get(f"{api_version}/{kind_name}")
        if tree is None:
            continue
        found = _first_unknown({"i": tree} if is_list else tree, path)
        if found is None:
            continue
        k, known = found
        bad = path[k]
        parent = _shown(path[:k]).lstrip(".")
        if is_list and path and isinstance(path[0], int):
            parent = _shown(path[1:k]).lstrip(".")
        close = difflib.get_close_matches(str(bad), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else \
            (f" (it has: {', '.join(known)})" if len(known) <= 12 else "")
        subject = f"a {api_version} {kind_name}" + (f"'s {parent}" if parent else "")
        out.append(f"unknown field reads.{name}{_shown(path[:k + 1])}: {subject} has no field "
                   f"{bad!r}{hint}")
    return out


def _table() -> dict[str, Any]:
    from statemachine.sim.schemas import kind_fields  # the data: loaded on first need only

    return kind_fields()
