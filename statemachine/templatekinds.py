"""The kinds a template file can create, read from its text across every branch.

``smrun operator manifests`` derives the operator's ClusterRole from every state of every
installed itinerary, including states that no plan at hand enables (optional hooks, Submariner
exports, the warm ``pause`` cutover, undo paths). Rendering shows only the branches one plan's
objects take, and needs a plan, its VMs and their objects; this module reads the template source
instead: each YAML document's column-0 ``apiVersion:`` and ``kind:`` lines, in every ``{% if %}``
branch and ``{% for %}`` body, and in the templates it includes or imports by a literal name.

Decisions recorded here:

- A ``kind`` pairs with the last column-0 ``apiVersion`` before it in its document (the part
  between ``---`` lines), else the first one after it: ``{% if %}`` branches that each write
  both pair correctly, and so does one ``apiVersion`` with alternative kinds.
- A kind or apiVersion written as an expression (``kind: {{ obj.kind }}``), a ``kind`` with no
  apiVersion in its document, and a template with no column-0 ``kind:`` line at all cannot be
  known without the data: :class:`DefinitionError` naming the file and line, never a guess or a
  wildcard. The fix is to write the kinds literally (one document per kind under an ``{% if %}``).
- Jinja comments are blanked (keeping line numbers); YAML comments after a value are dropped.

It renders nothing, evaluates no expression and talks to no cluster.
"""
from __future__ import annotations

import re
from pathlib import Path

from statemachine.errors import DefinitionError

__all__ = ["template_kinds"]

_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_LINE = re.compile(r"^(apiVersion|kind):[ \t]*(.*?)[ \t]*$")
_SEPARATOR = re.compile(r"^---(?:[ \t].*)?$")
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def _value(raw: str) -> str | None:
    """The literal scalar of a ``key: value`` line, or ``None`` for an expression."""
    text = raw.split(" #", 1)[0].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text if _PLAIN.match(text) else None


def _scan(source: str, filename: str) -> tuple[list[tuple[str, str]], bool]:
    """``(apiVersion, kind)`` pairs of one file, and whether it has a column-0 ``kind:`` line."""
    text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), source)
    documents: list[list[tuple[int, str, str | None, str]]] = [[]]
    for number, line in enumerate(text.splitlines(), 1):
        if _SEPARATOR.match(line):
            documents.append([])
            continue
        match = _LINE.match(line)
        if match:
            documents[-1].append((number, match.group(1), _value(match.group(2)), match.group(2)))
    pairs: list[tuple[str, str]] = []
    has_kind = False
    for lines in documents:
        for i, (number, key, value, raw) in enumerate(lines):
            if key != "kind":
                continue
            has_kind = True
            where = f"{filename}:{number}"
            if value is None:
                raise DefinitionError(
                    f"{where}: kind {raw!r} is an expression: the permissions this template "
                    "needs cannot be derived; write each kind literally (one document per kind "
                    "under an {% if %})")
            before = [ln for ln in lines[:i] if ln[1] == "apiVersion"]
            after = [ln for ln in lines[i + 1:] if ln[1] == "apiVersion"]
            version = before[-1] if before else (after[0] if after else None)
            if version is None:
                raise DefinitionError(f"{where}: kind {value} has no apiVersion line at the start "
                                      "of a line in its document")
            if version[2] is None:
                raise DefinitionError(
                    f"{filename}:{version[0]}: apiVersion {version[3]!r} is an expression: the "
                    "permissions this template needs cannot be derived; write it literally")
            pairs.append((version[2], value))
    return pairs, has_kind


def template_kinds(template: str, template_dir: Path | str | None) -> list[tuple[str, str]]:
    """Every ``(apiVersion, kind)`` the template file ``template`` (searched as rendering
    searches it: ``template_dir``, then the built-in templates) and the templates it includes or
    imports can render, sorted. :class:`DefinitionError` when that cannot be told from the text."""
    from jinja2 import TemplateNotFound, TemplateSyntaxError

    from statemachine.expressions import referenced_templates, template_environment

    env = template_environment(template_dir)
    loader = env.loader
    assert loader is not None
    found: set[tuple[str, str]] = set()
    any_kind = False
    todo, seen = [template], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            source, filename, _ = loader.get_source(env, name)
        except TemplateNotFound:
            raise DefinitionError(f"template {name!r} not found (searched "
                                  f"{', '.join(getattr(loader, 'searchpath', []))})") from None
        pairs, has_kind = _scan(source, filename or name)
        found.update(pairs)
        any_kind = any_kind or has_kind
        try:
            todo.extend(referenced_templates(env, name))
        except TemplateSyntaxError as exc:
            raise DefinitionError(f"{exc.filename or name}:{exc.lineno}: syntax error: "
                                  f"{exc.message}") from None
    if not any_kind:
        raise DefinitionError(f"{template}: no 'kind:' line at the start of a line: the kinds "
                              "this template creates cannot be derived")
    return sorted(found)
