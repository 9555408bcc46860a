"""Which ``reads.X``, ``outputs.X``, ``values.X`` and ``params.X`` an expression or template uses.

``used_names(source, kind)`` tokenizes an expression (``kind="expression"``) or a template
(``kind="template"``) with Jinja's lexer and returns every ``(root, name)`` it reads with a
literal name (``reads.sourceVM``, ``outputs['connectURL']``), in order. ``unknown_names`` compares
them with what is declared and words the finding with a "did you mean" (difflib).

It is a static look at the tokens: a name built at run time (``reads[item]``) is not seen,
and it evaluates nothing. A source that does not parse gives no names (the compile check reports
it).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Literal

from jinja2.exceptions import TemplateSyntaxError

from statemachine.expressions import make_environment

__all__ = ["ROOTS", "lexed", "name_uses", "unknown_names", "used_names"]

ROOTS = ("reads", "outputs", "values", "params")
_WHAT = {"reads": "read", "outputs": "output", "values": "value", "params": "parameter"}


@lru_cache(maxsize=1)
def _env() -> object:
    return make_environment(expressions=True)


@lru_cache(maxsize=4096)
def used_names(source: str, kind: Literal["expression", "template"]) -> tuple[tuple[str, str], ...]:
    """``(root, name)`` pairs read with a literal name, in source order, without repeats (a name
    only tested with ``is defined``/``is undefined`` is not a use)."""
    return tuple(dict.fromkeys((root, name) for root, name, test in name_uses(source, kind)
                               if test != "defined"))


@lru_cache(maxsize=4096)
def name_uses(source: str, kind: Literal["expression", "template"]
              ) -> tuple[tuple[str, str, Literal["", "defined", "default"]], ...]:
    """``(root, name, test)`` for every literal name ``source`` reads, in source order, without
    repeats: ``test`` is ``defined`` where the name is tested with ``is defined``/``is
    undefined``, ``default`` where it is filtered through ``default`` (both cope with its
    absence), else ``""``."""
    if not any(root in source for root in ROOTS):
        return ()
    tokens = list(lexed(source, kind))
    found: dict[tuple[str, str, Literal["", "defined", "default"]], None] = {}
    for i in range(len(tokens) - 2):
        tok, value = tokens[i]
        if tok != "name" or value not in ROOTS:
            continue
        if i > 0 and tokens[i - 1] == ("operator", "."):
            continue  # obj.values.x: an attribute of something else
        op, (arg_kind, arg) = tokens[i + 1], tokens[i + 2]
        after = tokens[i + 3:i + 6]
        if op == ("operator", ".") and arg_kind == "name":
            if after[:1] == [("operator", "(")]:
                continue  # outputs.get(...): a method of the mapping, not a name
        elif op == ("operator", "[") and arg_kind == "string":
            arg = arg[1:-1]
            after = after[1:] + tokens[i + 6:i + 7]  # past the closing bracket
        else:
            continue
        test: Literal["", "defined", "default"] = ""
        if _tests_definedness(after):
            test = "defined"  # `reads.token is defined`: asking is how a template copes with absence
        elif after[:2] in ([("operator", "|"), ("name", "default")], [("operator", "|"), ("name", "d")]):
            test = "default"
        found[(value, arg, test)] = None
    return tuple(found)


@lru_cache(maxsize=4096)
def lexed(source: str, kind: Literal["expression", "template"]) -> tuple[tuple[str, str], ...]:
    """``(token type, raw value)`` of ``source`` without whitespace; ``()`` if it does not lex.

    Jinja's lexer, not its parser: the tokens are enough to see `reads.X` / `reads['X']` (and not
    `obj.reads.X`), they keep template text and comments apart, and lexing costs a fraction of
    parsing: this runs for every expression of every itinerary loaded (shared with the field
    path check, :mod:`statemachine.fieldpaths`)."""
    text = source if kind == "template" else "{{ " + source + " }}"
    try:
        return tuple((tok, value) for _, tok, value in _env().lex(text)  # type: ignore[attr-defined]
                     if tok != "whitespace")
    except TemplateSyntaxError:
        return ()


def _tests_definedness(after: list[tuple[str, str]]) -> bool:
    words = [v for k, v in after if k == "name"]
    return bool(words) and after[0] == ("name", "is") and \
        any(w in ("defined", "undefined") for w in words[1:3])


def unknown_names(source: str | None, kind: Literal["expression", "template"],
                  known: Mapping[str, Iterable[str]]) -> list[str]:
    """One message per undeclared name, e.g. ``unknown read 'sourceVMM' (did you mean 'sourceVM'?)``.

    ``known`` maps each root to the names declared for it; a root absent from ``known`` is not
    checked."""
    if not source:
        return []
    out = []
    for root, name in used_names(source, kind):
        if root not in known:
            continue
        declared = list(known[root])
        if name in declared:
            continue
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else \
            (f" (declared: {', '.join(sorted(declared))})" if declared else " (none declared)")
        out.append(f"unknown {_WHAT[root]} {root}.{name}{hint}")
    return out
