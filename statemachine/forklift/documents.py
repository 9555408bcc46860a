"""The objects an import reads, each with where it came from.

:func:`load_files` parses YAML (or JSON) files that hold any number of documents, each an object
or a ``kind: List`` / ``kind: <Kind>List`` (what ``kubectl get -o yaml`` prints), into
:class:`InputObject`\\ s that remember their file and the line of every field, so a problem prints
as ``forklift.yaml:42: Plan mtv/rebalance: spec.type: ...``. Objects read from a cluster carry
the cluster instead of a file and no lines.

Decisions: smrun's input limits apply as to every YAML it reads (``yamlsource``: size,
characters, nesting, aliases); safe loading only; a duplicate key is an error (PyYAML would keep the last one and
hide the typo), as in :mod:`statemachine.yamlsource`; empty documents are skipped. This module
checks nothing beyond "each document is an object or a list of objects" (``shape`` does).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from statemachine.errors import DefinitionError, Problem
from statemachine import yamlsource
from statemachine.yamlsource import DocPath, format_path

__all__ = ["InputObject", "Origin", "load_files"]


@dataclass(frozen=True)
class Origin:
    """Where an object came from: a file (``lines`` of its document, ``prefix`` = the object's
    path in that document, e.g. ``("items", 2)``) or a cluster (``where`` = ``cluster NAME``)."""

    where: str
    lines: Mapping[DocPath, int] = field(default_factory=dict)
    prefix: DocPath = ()

    def line(self, path: DocPath) -> int | None:
        """The line of ``path`` inside the object, or of its nearest ancestor that has one."""
        parts = (*self.prefix, *path)
        while True:
            if parts in self.lines:
                return self.lines[parts]
            if not parts:
                return None
            parts = parts[:-1]


@dataclass(frozen=True)
class InputObject:
    """One Kubernetes object as read (``data`` is never changed after loading)."""

    data: Mapping[str, Any]
    origin: Origin

    @property
    def api_version(self) -> str:
        return str(self.data.get("apiVersion") or "")

    @property
    def kind(self) -> str:
        return str(self.data.get("kind") or "")

    @property
    def metadata(self) -> Mapping[str, Any]:
        meta = self.data.get("metadata")
        return meta if isinstance(meta, Mapping) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "")

    @property
    def spec(self) -> Mapping[str, Any]:
        spec = self.data.get("spec")
        return spec if isinstance(spec, Mapping) else {}

    @property
    def label(self) -> str:
        """``Plan mtv/rebalance`` (``Plan rebalance`` when it has no namespace)."""
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind or 'object'} {ns}{self.name or '(no name)'}"

    def problem(self, path: DocPath, message: str) -> Problem:
        """A problem at ``path`` of this object: ``file:line: Kind ns/name: path: message``."""
        where = f"{self.label}: {format_path(path)}" if path else self.label
        return Problem(self.origin.where, where, message, self.origin.line(path))

    def error(self, path: DocPath, message: str) -> DefinitionError:
        """A :class:`DefinitionError` (exit 2) for one problem at ``path``."""
        problem = self.problem(path, message)
        return DefinitionError(str(problem), [problem])


class _Loader(yaml.SafeLoader):
    """SafeLoader subclass, so that nothing global is modified."""


def load_files(paths: Sequence[str | Path], *, default_namespace: str = "") -> list[InputObject]:
    """Every object in ``paths``, in file order. An object without ``metadata.namespace`` gets
    ``default_namespace`` (as ``kubectl apply -n`` would); raises ``DefinitionError`` (exit 2)."""
    objects: list[InputObject] = []
    for path in paths:
        objects.extend(_load_file(str(path), default_namespace))
    return objects


def _load_file(file: str, default_namespace: str) -> Iterable[InputObject]:
    # smrun's input limits first (size, characters, nesting, alias expansion: yamlsource), then
    # a second, line-recording parse; import files are small, so the double parse costs nothing
    # that matters.
    text = yamlsource.read_text(file)
    yamlsource.load_all_text(text, file)
    loader = _Loader(text)
    found: list[InputObject] = []
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[DocPath, int] = {}
            _walk(node, (), lines, file)
            data = loader.construct_document(node)
            index += 1
            found.extend(_objects(data, file, index, lines, default_namespace))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise _fail(file, mark.line + 1 if mark is not None else None, f"invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise _fail(file, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return found


def _objects(data: Any, file: str, index: int, lines: Mapping[DocPath, int],
             default_namespace: str) -> list[InputObject]:
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise _fail(file, lines.get(()), f"document {index}: not an object (a mapping with "
                                         "apiVersion, kind and metadata)")
    kind = data.get("kind")
    items = data.get("items")
    if isinstance(kind, str) and kind.endswith("List") and "items" in data:
        if not isinstance(items, list):
            raise _fail(file, lines.get(("items",)), f"document {index}: items: must be a list")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise _fail(file, lines.get(("items", i)),
                            f"{format_path(('items', i))}: must be an object")
            out.append(_object(item, Origin(file, lines, ("items", i)), default_namespace))
        return out
    return [_object(data, Origin(file, lines, ()), default_namespace)]


def _object(data: Mapping[str, Any], origin: Origin, default_namespace: str) -> InputObject:
    meta = data.get("metadata")
    if default_namespace and isinstance(meta, Mapping) and not meta.get("namespace"):
        data = {**data, "metadata": {**meta, "namespace": default_namespace}}
    return InputObject(data, origin)


def _walk(node: yaml.Node, path: DocPath, lines: dict[DocPath, int], file: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            if key == "<<":
                _walk(value_node, path, lines, file)
                continue
            if key in seen:
                raise _fail(file, key_node.start_mark.line + 1,
                            f"{format_path((*path, key))}: duplicate key")
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines, file)


def _fail(file: str, line: int | None, message: str) -> DefinitionError:
    problem = Problem(file, "", message, line)
    return DefinitionError(str(problem), [problem])
