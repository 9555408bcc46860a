"""Load one YAML document safely and remember the line of every mapping key and sequence item.

Itineraries and plans are reported as ``<file>:<line>: <path>: <message>``, so the loader keeps a
side table from a document path (a tuple of keys and indexes) to its 1-based line number. Paths
print like ``spec.states[3].readiness.ready`` (see :func:`format_path`); a value's JSON type is
named by :func:`json_type_name` (for type errors about parsed documents and request bodies).

It uses safe loaders only (no Python tags), rejects duplicate keys (PyYAML silently keeps
the last one, which hides typos), and turns every YAML error into one :class:`SchemaError` line
naming the file and line. It does not validate anything beyond YAML syntax.

Decision (start-up time, issue 8): a document is parsed with libyaml's ``CSafeLoader`` when PyYAML
has it -- about 12x faster than the pure-Python parser on a built-in itinerary (2 ms against 24 ms),
with the same nodes, marks (lines) and safe constructors. Only a document that parses cleanly is
taken from it: on any YAML error the text is parsed again with the pure-Python ``SafeLoader``, so
every error message and line reported is the one PyYAML's own parser gives (for texts up to
``REPARSE_BYTES``; a larger one, or one the pure-Python parser cannot take, is reported with
libyaml's message).

Input limits (issue 13), the same for every YAML smrun reads (plans, itineraries, seeds, hook
playbooks, rendered templates: :func:`load`, :func:`loads`, :func:`load_all_text`):

- **size**: a file over ``MAX_BYTES`` (4 MiB; simulator seeds ``MAX_SEED_BYTES``, 32 MiB) is
  refused before it is read whole or parsed;
- **characters**: text that is not UTF-8, or holds a NUL or another character YAML forbids, is
  refused with ``file:line:column`` of the first one (one regular-expression search, in C);
- **nesting**: deeper than ``MAX_DEPTH`` (100) levels is refused (libyaml itself stops at 1000);
- **values**: a plan or itinerary of more than ``MAX_NODES`` (100,000) nodes (mapping values and
  list items: a plan of about 30,000 VMs) is refused before its schema is checked;
- **aliases**: every node reached again through an alias counts once per reach; more than
  ``MAX_ALIAS_NODES`` (100,000) such nodes in one document ("billion laughs", merge-key bombs)
  is refused as "too many alias references", before anything is constructed. Composing is
  safe: libyaml shares an aliased node, it does not copy it.

The checks ride on the walk that records line numbers (no second parse in the good path); the
alias accounting runs only when the text has a ``*`` at all.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from statemachine.errors import Problem, SchemaError

PathPart = str | int
DocPath = tuple[PathPart, ...]

MAX_BYTES = 4 * 1024 * 1024
MAX_SEED_BYTES = 32 * 1024 * 1024  # simulator seeds: a 1,000-VM benchmark seed is ~5,000 objects
MAX_DEPTH = 100
MAX_ALIAS_NODES = 100_000
# Plans and itineraries (the documents read with line numbers, then schema-validated): a plan of
# ~30,000 VMs. Checking a 4 MiB plan of 100,000 VMs against its schema took ~17 s of CPU.
MAX_NODES = 100_000
REPARSE_BYTES = 256 * 1024
# What YAML 1.1 (and PyYAML's reader) does not accept in a stream; NUL is the usual culprit.
_FORBIDDEN = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD"
                        "\U00010000-\U0010FFFF]")


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
    origins: Mapping[DocPath, tuple[str, DocPath]] = field(default_factory=dict)
    """For a document assembled from several files (an itinerary and the fragments it
    includes): for each recorded path written in another file than ``file``, that file and the
    path there (``common/hooks.yaml``, ``spec.states[0]``)."""
    digest: str = field(default="", compare=False)
    """SHA-256 (hex) of the text this document was parsed from (for an assembled document, of
    every file's text with its name: :mod:`statemachine.itinerary_include`); empty when not
    known. What a verdict about the document may be keyed by (:mod:`statemachine.itinerary_verdict`):
    the text that was parsed, not a second read of the file."""

    def locate(self, path: DocPath) -> tuple[str, int | None, DocPath]:
        """``(file, line, path in that file)`` of ``path``: the line is that of ``path`` or
        of its nearest ancestor that has one."""
        parts = tuple(path)
        while True:
            if parts in self.lines or not parts:
                origin = self.origins.get(parts)
                if origin is None:
                    return self.file, self.lines.get(parts), tuple(path)
                return origin[0], self.lines.get(parts), (*origin[1], *path[len(parts):])
            parts = parts[:-1]

    def line(self, path: DocPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        return self.locate(path)[1]

    def where(self, path: DocPath) -> str:
        """``file:line: path`` (``file: path`` when no line is known), in the file ``path``
        was written in."""
        file, line, shown = self.locate(path)
        return f"{file}:{line}: {format_path(shown)}" if line else f"{file}: {format_path(shown)}"

    def problem(self, path: DocPath, message: str) -> Problem:
        """A :class:`Problem` located at ``path`` in this document (or in the included file
        that ``path`` comes from, with its path there)."""
        file, line, shown = self.locate(path)
        return Problem(file, format_path(shown), message, line)


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


def json_type_name(value: Any, *, python_names: bool = False) -> str:
    """The JSON type of a parsed value as type errors name it (``null``, ``boolean``,
    ``integer``, ``number``, ``string``, ``array``, ``object``).

    A value of no JSON type (a tuple, a ``date`` YAML made) is an ``object``, as kube-openapi
    reports it; with ``python_names`` it is its Python type's name instead (a mapping stays
    ``object``), so that a message about it does not mislead.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if python_names and not isinstance(value, Mapping):
        return type(value).__name__
    return "object"


def _refuse(file: str, message: str, line: int | None = None,
            column: int | None = None) -> SchemaError:
    problem = Problem(file, "", message, line, column)
    return SchemaError(str(problem), [problem])


def read_text(path: str | Path, *, what: str = "", limit: int = MAX_BYTES) -> str:
    """The UTF-8 text of ``path``, refused (one :class:`SchemaError` line naming the file) when it
    cannot be read, is larger than ``limit`` bytes (checked before reading it whole), is not
    UTF-8, or holds a character YAML forbids (``file:line:column``). ``what`` prefixes "cannot
    read" (``"playbook"``)."""
    file = str(path)
    cannot = f"cannot read {what}".rstrip()
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)  # never more than the cap, whatever the file is
    except OSError as exc:
        raise _refuse(file, f"{cannot}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise _refuse(file, f"larger than {_size(limit)}: refused before parsing "
                            "(smrun reads YAML files of at most that size)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _refuse(file, f"not UTF-8 text (byte 0x{data[exc.start]:02x})", line, column) from None
    check_characters(text, file)
    return text


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"


def check_characters(text: str, file: str) -> None:
    """Refuse a NUL or another character that YAML does not allow, at ``file:line:column``."""
    bad = _FORBIDDEN.search(text)
    if bad is None:
        return
    pos = bad.start()
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    name = "NUL" if bad.group() == "\0" else f"U+{ord(bad.group()):04X}"
    raise _refuse(file, f"forbidden character {name} (YAML allows no control characters)",
                  line, column)


def load(path: str | Path) -> SourceDoc:
    """Read and parse the single YAML document in ``path`` (within the input limits)."""
    return _loads_checked(read_text(path), str(path))


def loads(text: str, file: str = "<string>") -> SourceDoc:
    """Parse ``text`` (one YAML document); ``file`` is used in messages."""
    if len(text) > MAX_BYTES:  # characters, not bytes: a cheap first cut before encoding
        raise _refuse(file, f"larger than {_size(MAX_BYTES)}: refused before parsing")
    check_characters(text, file)
    return _loads_checked(text, file)


def text_digest(text: str) -> str:
    """:attr:`SourceDoc.digest` of ``text`` (that of its UTF-8 bytes, as the file holds them)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _loads_checked(text: str, file: str) -> SourceDoc:
    aliases = "*" in text
    digest = text_digest(text)  # ~30 us for a built-in itinerary
    if _FAST is None:
        return _parse(_Loader(text), file, aliases, digest)
    try:
        return _parse(_FAST(text), file, aliases, digest)
    except SchemaError as exc:
        if not isinstance(exc.__cause__, yaml.YAMLError):
            raise  # our own limits and duplicate keys: the same from either parser
        fast_error = exc
    if len(text) > REPARSE_BYTES or "nested deeper than" in str(fast_error):
        raise fast_error  # the pure-Python parser would be slow here, or recurse too deep
    try:
        return _parse(_Loader(text), file, aliases, digest)
    except RecursionError:
        raise fast_error from None


def _parse(loader: Any, file: str, aliases: bool, digest: str = "") -> SourceDoc:
    """Compose, check limits and duplicate keys, construct: one document from ``loader``."""
    try:
        node = loader.get_single_node()
        if node is None:
            data: Any = None
            lines: dict[DocPath, int] = {}
        else:
            walk = _Walk(file, aliases)
            walk.walk(node, (), 0)
            lines = walk.lines
            if walk.problems:
                raise SchemaError(walk.problems[0].message, walk.problems)
            data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file) from exc
    finally:
        loader.dispose()
    return SourceDoc(data, file, lines, digest=digest)


def _yaml_error(exc: yaml.YAMLError, file: str) -> SchemaError:
    """One :class:`SchemaError` line for a PyYAML error: at its line (and for too deep a
    nesting, column) when PyYAML marks where it is, else with PyYAML's message as it is."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return SchemaError(str(exc), [Problem(file, "", f"invalid YAML: {exc}")])
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    what = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
    if "maximum nesting depth" in what:
        what = f"nested deeper than {MAX_DEPTH} levels"
        return SchemaError(what, [Problem(file, "", what, line, mark.column + 1 if mark else None)])
    return SchemaError(what, [Problem(file, "", f"invalid YAML: {what}", line)])


class _LimitExceeded(Exception):
    """Stops a walk at once: the limit's problem is the only one reported."""


class _Walk:
    """One pass over the composed nodes: records lines, finds duplicate keys, and enforces
    ``MAX_DEPTH`` and ``MAX_ALIAS_NODES`` (the latter only when ``aliases``: the text has a
    ``*``, so without one no node can be reached twice)."""

    def __init__(self, file: str, aliases: bool, record_lines: bool = True) -> None:
        self.file = file
        self.aliases = aliases
        self.record = record_lines
        self.lines: dict[DocPath, int] = {}
        self.problems: list[Problem] = []
        self.seen: set[int] = set()
        self.expanded = 0
        self.nodes = 0
        self.exceeded: Problem | None = None

    def limit(self, node: yaml.Node, message: str) -> None:
        mark = node.start_mark
        self.exceeded = Problem(self.file, "", message, mark.line + 1, mark.column + 1)
        self.problems = [self.exceeded]
        raise _LimitExceeded

    def walk(self, node: yaml.Node, path: DocPath, depth: int) -> None:
        try:
            self._walk(node, path, depth, False)
        except _LimitExceeded:
            pass

    def _walk(self, node: yaml.Node, path: DocPath, depth: int, again: bool) -> None:
        if self.record:
            self.lines.setdefault(path, node.start_mark.line + 1)
        if self.aliases:
            if again or id(node) in self.seen:
                again = True
                self.expanded += 1
                if self.expanded > MAX_ALIAS_NODES:
                    self.limit(node, f"too many alias references (they expand to more than "
                                     f"{MAX_ALIAS_NODES} nodes)")
            else:
                self.seen.add(id(node))
        if self.record and not again:  # nodes as written; what aliases add is counted above
            self.nodes += 1
            if self.nodes > MAX_NODES:
                self.limit(node, f"more than {MAX_NODES} values (mapping values and list items): "
                                 "too large for a plan or itinerary")
        if isinstance(node, yaml.MappingNode):
            if depth >= MAX_DEPTH:
                self.limit(node, f"nested deeper than {MAX_DEPTH} levels")
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key: PathPart = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                if key == "<<":  # merge keys: the merged children keep their own lines
                    self._walk(value_node, path, depth + 1, again)
                    continue
                if key in seen:
                    self.problems.append(Problem(self.file, format_path((*path, key)),
                                                 "duplicate key", key_node.start_mark.line + 1))
                seen.add(key)
                if self.record:
                    self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key), depth + 1, again)
        elif isinstance(node, yaml.SequenceNode):
            if depth >= MAX_DEPTH:
                self.limit(node, f"nested deeper than {MAX_DEPTH} levels")
            for index, item in enumerate(node.value):
                if self.record:
                    self.lines[(*path, index)] = item.start_mark.line + 1
                self._walk(item, (*path, index), depth + 1, again)


_COLLECTIONS = (yaml.MappingNode, yaml.SequenceNode)


def _check_depth(node: yaml.Node, file: str) -> None:
    """The nesting limit alone, for a text without aliases (no node is reached twice): the
    cheapest walk, over collections only (rendered manifests are parsed on the engine's path)."""
    stack: list[tuple[Any, int]] = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        if depth >= MAX_DEPTH:
            mark = current.start_mark
            problem = Problem(file, "", f"nested deeper than {MAX_DEPTH} levels", mark.line + 1,
                              mark.column + 1)
            raise SchemaError(str(problem), [problem])
        if current.__class__ is yaml.MappingNode:
            children = [v for _, v in current.value if isinstance(v, _COLLECTIONS)]
        else:
            children = [v for v in current.value if isinstance(v, _COLLECTIONS)]
        stack.extend((child, depth + 1) for child in children)


_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ = f"{_TAG}str", f"{_TAG}map", f"{_TAG}seq"
#: The scalar tags whose safe constructors are plain functions of the node's text.
_SCALARS = frozenset(f"{_TAG}{t}" for t in ("null", "bool", "int", "float", "binary",
                                             "timestamp", "str"))


class _NotPlain(Exception):
    """A node :func:`_plain` leaves to PyYAML's own constructor."""


def _plain(loader: Any, node: yaml.Node) -> Any:
    """What ``loader.construct_document(node)`` gives, for a document of plain mappings (string
    or scalar keys, no merge keys), sequences and the standard scalars, whose nodes are each
    reached once (no alias); raises :class:`_NotPlain` for anything else. Decision (issue 17,
    tenth session): PyYAML's constructor goes through its bookkeeping (constructed and recursive
    node tables, a generator per collection) for every node; the rendered manifests of one VM
    are ~8 documents, parsed in preflight and again when their states run, and construction was
    half of their parse. The scalars are made by the loader's own constructors."""
    cls = node.__class__
    if cls is yaml.ScalarNode:
        tag = node.tag
        if tag == _STR:
            return node.value
        if tag not in _SCALARS:
            raise _NotPlain
        return loader.yaml_constructors[tag](loader, node)
    if cls is yaml.MappingNode:
        if node.tag != _MAP:
            raise _NotPlain
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.__class__ is not yaml.ScalarNode or key_node.tag not in _SCALARS:
                raise _NotPlain  # a merge key, a `=` (value) key, a collection or tagged key
            out[_plain(loader, key_node)] = _plain(loader, value_node)
        return out
    if cls is yaml.SequenceNode:
        if node.tag != _SEQ:
            raise _NotPlain
        return [_plain(loader, item) for item in node.value]
    raise _NotPlain


def load_all_text(text: str, file: str, *, limit: int = MAX_BYTES) -> list[Any]:
    """Every document of ``text`` (rendered templates, hook playbooks, seeds), within the same
    limits as :func:`loads` (size, characters, depth, aliases) but without line numbers or the
    duplicate-key check. Raises :class:`SchemaError`; libyaml's messages."""
    if len(text) > limit:
        raise _refuse(file, f"larger than {_size(limit)}: refused before parsing")
    check_characters(text, file)
    aliases = "*" in text
    loader: Any = (_FAST or _Loader)(text)
    out: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if aliases:
                walk = _Walk(file, aliases, record_lines=False)
                walk.walk(node, (), 0)
                if walk.exceeded is not None:
                    raise SchemaError(str(walk.exceeded), [walk.exceeded])
            else:
                _check_depth(node, file)
                try:  # no alias: every node is reached once
                    out.append(_plain(loader, node))
                    continue
                except _NotPlain:
                    pass
            out.append(loader.construct_document(node))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file) from exc
    finally:
        loader.dispose()
    return out
