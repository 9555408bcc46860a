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
- A Role or ClusterRole a template creates also needs, from whoever creates it, every permission
  it grants (Kubernetes' RBAC escalation check): its rules are read from the document's text
  with the Jinja tags dropped and expressions replaced by a placeholder; apiGroups, resources
  and verbs must be literal (resourceNames may be expressions: the grant leaves them out, the
  one widening this derivation makes, since the names differ per VM).

It renders nothing, evaluates no expression and talks to no cluster.
"""
from __future__ import annotations

import re
from pathlib import Path

from statemachine.errors import DefinitionError

__all__ = ["Grant", "template_grants", "template_kinds"]

_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_LINE = re.compile(r"^(apiVersion|kind):[ \t]*(.*?)[ \t]*$")
_SEPARATOR = re.compile(r"^---(?:[ \t].*)?$")
_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_RBAC = "rbac.authorization.k8s.io/"
_TAG = re.compile(r"\{%.*?%\}")
_EXPR = re.compile(r"\{\{.*?\}\}")
_PLACEHOLDER = "__smrun_expression__"

#: ``(API group, resource, verbs)``: one resource a Role grants verbs on.
Grant = tuple[str, str, tuple[str, ...]]


def _value(raw: str) -> str | None:
    """The literal scalar of a ``key: value`` line, or ``None`` for an expression."""
    text = raw.split(" #", 1)[0].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text if _PLAIN.match(text) else None


def _scan(source: str, filename: str) -> tuple[list[tuple[str, str]], bool, list[Grant]]:
    """``(apiVersion, kind)`` pairs of one file, whether it has a column-0 ``kind:`` line, and
    what the RBAC Roles it creates grant."""
    text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), source)
    documents: list[list[tuple[int, str, str | None, str]]] = [[]]
    bodies: list[list[tuple[int, str]]] = [[]]
    for number, line in enumerate(text.splitlines(), 1):
        if _SEPARATOR.match(line):
            documents.append([])
            bodies.append([])
            continue
        bodies[-1].append((number, line))
        match = _LINE.match(line)
        if match:
            documents[-1].append((number, match.group(1), _value(match.group(2)), match.group(2)))
    pairs: list[tuple[str, str]] = []
    grants: list[Grant] = []
    has_kind = False
    for lines, body in zip(documents, bodies):
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
            if version[2].startswith(_RBAC) and value in ("Role", "ClusterRole"):
                grants += _role_rules(body, f"{filename}:{number}", value)
    return pairs, has_kind, grants


def _role_rules(body: list[tuple[int, str]], where: str, kind: str) -> list[Grant]:
    """What a Role document grants, from its text: Jinja tags dropped, expressions made a
    placeholder; its rules' apiGroups, resources and verbs must be literal (resourceNames,
    namespaces and names may be expressions: the grant is derived without them)."""
    import yaml

    lines = []
    for _, line in body:
        line = _TAG.sub("", line)
        if line.strip():
            lines.append(_EXPR.sub(_PLACEHOLDER, line))
    try:
        doc = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError:
        doc = None
    rules = doc.get("rules") if isinstance(doc, dict) else None
    if not isinstance(rules, list):
        raise DefinitionError(f"{where}: the rules of this {kind} cannot be read from the "
                              "template's text: the permissions needed to create it cannot be "
                              "derived; write its rules literally")
    out: list[Grant] = []
    for rule in rules:
        fields = [rule.get(k) if isinstance(rule, dict) else None
                  for k in ("apiGroups", "resources", "verbs")]
        if not all(isinstance(f, list) and f and all(isinstance(x, str) and _PLACEHOLDER not in x
                                                     for x in f) for f in fields):
            raise DefinitionError(f"{where}: a rule of this {kind} has apiGroups, resources or "
                                  "verbs that are not literal: the permissions needed to create "
                                  "it cannot be derived; write them literally")
        groups, resources, verbs = (list(f or ()) for f in fields)
        out += [(g, r, tuple(verbs)) for g in groups for r in resources]
    return out


def _walk(template: str, template_dir: Path | str | None) -> tuple[list[tuple[str, str]], list[Grant]]:
    from jinja2 import TemplateNotFound, TemplateSyntaxError

    from statemachine.expressions import referenced_templates, template_environment

    env = template_environment(template_dir)
    loader = env.loader
    assert loader is not None
    found: set[tuple[str, str]] = set()
    grants: list[Grant] = []
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
        pairs, has_kind, granted = _scan(source, filename or name)
        found.update(pairs)
        grants += granted
        any_kind = any_kind or has_kind
        try:
            todo.extend(referenced_templates(env, name))
        except TemplateSyntaxError as exc:
            raise DefinitionError(f"{exc.filename or name}:{exc.lineno}: syntax error: "
                                  f"{exc.message}") from None
    if not any_kind:
        raise DefinitionError(f"{template}: no 'kind:' line at the start of a line: the kinds "
                              "this template creates cannot be derived")
    return sorted(found), grants


def template_kinds(template: str, template_dir: Path | str | None) -> list[tuple[str, str]]:
    """Every ``(apiVersion, kind)`` the template file ``template`` (searched as rendering
    searches it: ``template_dir``, then the built-in templates) and the templates it includes or
    imports can render, sorted. :class:`DefinitionError` when that cannot be told from the text."""
    return _walk(template, template_dir)[0]


def template_grants(template: str, template_dir: Path | str | None) -> list[Grant]:
    """What the RBAC Roles and ClusterRoles the template can create grant: Kubernetes lets a
    subject create a Role only if it holds every permission the Role grants (its escalation
    check), so whoever runs the template needs these too."""
    return _walk(template, template_dir)[1]
