"""Load one YAML document safely and remember the line of every mapping key and sequence item.

Itineraries and plans are reported as ``<file>:<line>: <path>: <message>``, so the loader keeps a
side table from a document path (a tuple of keys and indexes) to its 1-based line number. Paths
print like ``spec.states[3].readiness.ready`` (see :func:`format_path`).

It uses safe loaders only (no Python tags), rejects duplicate keys (PyYAML silently keeps
the last one, which hides typos), and turns every YAML error into one :class:`SchemaError` line
naming the file and line. It does not validate anything beyond YAML syntax.

Decision (start-up time, issue 8): a document is parsed with libyaml's ``CSafeLoader`` when PyYAML
has it -- about 12x faster than the pure-Python parser on a built-in itinerary (2 ms against 24 ms),
with the same nodes, marks (lines) and safe constructors. Only a document that parses cleanly is
taken from it: on any YAML error the text is parsed again with the pure-Python ``SafeLoader``, so
every error message and line reported is the one PyYAML's own parser gives.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from statemachine.errors import Problem, SchemaError

PathPart = str | int
DocPath = tuple[PathPart, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with no extra constructors; a subclass so that nothing global is modified."""


# The fast path; ``None`` when PyYAML was built without libyaml (then only ``_Loader`` is used).
_FAST: type[Any] | None = None
if hasattr(yaml, "CSafeLoader"):
    class _FastLoader(yaml.CSafeLoader):
        """libyaml's safe loader, likewise subclassed so that nothing global is modified."""

    _FAST = _FastLoader


@dataclass(frozen=True)
class SourceDoc:
    """A parsed YAML document, its file name and the line of every key and item."""

    data: Any
    file: str
    lines: Mapping[DocPath, int] = field(default_factory=dict)

    def line(self, path: DocPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.lines.get((), None)

    def problem(self, path: DocPath, message: str) -> Problem:
        """A :class:`Problem` located at ``path`` in this document."""
        return Problem(self.file, format_path(path), message, self.line(path))


def format_path(path: DocPath) -> str:
    """``('spec', 'states', 3, 'name')`` -> ``spec.states[3].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = str(part)
    return out


def load(path: str | Path) -> SourceDoc:
    """Read and parse the single YAML document in ``path``."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(f"{file}: cannot read: {exc.strerror or exc}",
                          [Problem(file, "", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise SchemaError(f"{file}: not UTF-8 text", [Problem(file, "", "not UTF-8 text")]) from None
    return loads(text, file)


def loads(text: str, file: str = "<string>") -> SourceDoc:
    """Parse ``text`` (one YAML document); ``file`` is used in messages."""
    if _FAST is not None:
        try:
            return _parse(_FAST(text), file)
        except Exception:  # noqa: BLE001 - any failure is reported by the reference parser below
            pass
    return _parse(_Loader(text), file)


def _parse(loader: Any, file: str) -> SourceDoc:
    """Compose, check duplicate keys, construct: one document from ``loader``."""
    try:
        node = loader.get_single_node()
        if node is None:
            data: Any = None
            lines: dict[DocPath, int] = {}
        else:
            lines = {}
            problems: list[Problem] = []
            _walk(node, (), lines, problems, file)
            if problems:
                raise SchemaError(problems[0].message, problems)
            data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise SchemaError(what, [Problem(file, "", f"invalid YAML: {what}", line)]) from None
    except yaml.YAMLError as exc:
        raise SchemaError(str(exc), [Problem(file, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    return SourceDoc(data, file, lines)


def _walk(node: yaml.Node, path: DocPath, lines: dict[DocPath, int],
          problems: list[Problem], file: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key: PathPart = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            if key == "<<":  # merge keys: the merged children keep their own lines
                _walk(value_node, path, lines, problems, file)
                continue
            if key in seen:
                problems.append(Problem(file, format_path((*path, key)), "duplicate key",
                                        key_node.start_mark.line + 1))
            seen.add(key)
            lines[(*path, key)] = key_node.start_mark.line + 1
            _walk(value_node, (*path, key), lines, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(item, (*path, index), lines, problems, file)
