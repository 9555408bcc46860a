"""Assemble an itinerary from its file and the fragments it includes (``spec.include``).

A fragment (``kind: ItineraryFragment``, ``schemas/itinerary-fragment.schema.json``) holds parts
several itineraries share: ``values``, ``predicates``, ``reads``, ``preflight`` checks, and a
library of ``states``. An itinerary (or a fragment) lists fragment files in ``spec.include``,
relative to itself. :func:`assemble` turns the itinerary's document into one document as if
everything had been written in the itinerary, which the JSON Schema, the dataclass builder and
the semantic checks then see, and keeps, for every path of that document, the file and line it
came from: a problem in a fragment's read is reported at ``common/vm-resources.yaml:40``, not at
the itinerary.

The rules (docs/itinerary.md, "Shared fragments"), decided:

- order: the including file's entries first, then each included fragment's, in the order of
  ``include`` (a fragment's own includes right after it). ``values`` are computed lazily, so their
  order does not matter; ``reads`` are resolved in this order, so a fragment's read may use the
  itinerary's reads (``reads.sourceVM``) and ``preflight`` findings are listed in it;
- a fragment's ``states`` are not part of any flow by themselves: a state entry ``use: NAME`` in
  ``spec.states`` (or ``spec.setup.states``) places the fragment's state ``NAME`` there, and the
  entry's other fields are applied over it as a JSON merge patch (RFC 7386: a mapping merges, any
  other value replaces, ``null`` removes the field);
- a name may be defined once: a value, predicate, read, check or state name that two files define
  is refused, naming both places (nothing is overridden silently);
- a fragment included twice (directly and through another fragment) is included once; a cycle
  is refused, naming the chain.

Every problem is one ``file:line: path: message`` line (exit 2). This module reads the fragment
files and validates them against their schema; it evaluates nothing and knows nothing of what
the assembled itinerary means.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statemachine.errors import Problem, SchemaError
from statemachine.filekind import expect
from statemachine.yamlsource import DocPath, SourceDoc, load

__all__ = ["Assembled", "assemble", "load_assembled"]

FRAGMENT_KIND = "ItineraryFragment"
# The named entries of each kind, and what a name is called in messages.
_MAPPINGS = (("values", "value"), ("predicates", "predicate"))
_LISTS = (("reads", "read"), ("preflight", "preflight check"))


@dataclass(frozen=True)
class Assembled:
    """An itinerary's document with its fragments merged in, and the fragment files."""

    doc: SourceDoc
    includes: tuple[Path, ...] = ()


def load_assembled(path: Path) -> Assembled:
    """Read the itinerary ``path`` and assemble it (:func:`assemble`)."""
    return assemble(load(path), path)


def assemble(doc: SourceDoc, path: Path) -> Assembled:
    """``doc`` (the itinerary file ``path``) with its fragments merged in. Raises
    :class:`SchemaError` with every problem of the includes (a missing or invalid fragment, a
    cycle, a name defined twice, a ``use`` of a state no fragment has). A document that is not
    an itinerary mapping is returned as it is, for the schema to describe."""
    spec = doc.data.get("spec") if isinstance(doc.data, dict) else None
    if not isinstance(spec, dict):
        return Assembled(doc)
    if "include" not in spec and not _has_use(spec):
        return Assembled(doc)  # the common case: nothing to do, nothing copied
    assembler = _Assembler(doc, path)
    assembled = assembler.run()
    if assembler.problems:
        found = sorted(assembler.problems, key=lambda p: (p.file, p.line or 0, p.path))
        raise SchemaError(str(found[0]), found)
    return assembled


def _has_use(spec: dict[str, Any]) -> bool:
    setup = spec.get("setup")
    lists = [spec.get("states"), setup.get("states") if isinstance(setup, dict) else None]
    return any(isinstance(s, dict) and "use" in s
               for states in lists if isinstance(states, list) for s in states)


@dataclass
class _Fragment:
    doc: SourceDoc
    path: Path
    label: str  # the path as the including file wrote it, joined to that file's folder


class _Assembler:
    def __init__(self, root: SourceDoc, path: Path) -> None:
        self.root = root
        self.path = path
        self.problems: list[Problem] = []
        self.fragments: list[_Fragment] = []
        self.seen: set[Path] = set()
        self.data: dict[str, Any] = copy.deepcopy(root.data)
        self.spec: dict[str, Any] = self.data["spec"]
        self.lines: dict[DocPath, int] = dict(root.lines)
        self.origins: dict[DocPath, tuple[str, DocPath]] = {}
        # name -> (file, path) of its definition, per kind of name
        self.defined: dict[str, dict[str, tuple[SourceDoc, DocPath]]] = {}
        self.library: dict[str, tuple[_Fragment, int]] = {}

    # -- collecting the fragments --------------------------------------------------------------

    def run(self) -> Assembled:
        self.collect(self.root, self.path, (self.path.resolve(),))
        for kind, label in (*_MAPPINGS, *_LISTS):
            for name, at in self.names(self.root, kind):
                self.defined.setdefault(kind, {})[name] = (self.root, at)
        for fragment in self.fragments:
            self.merge(fragment)
        self.check_root_states()
        if not self.problems:  # a missing fragment's states are no news: its line says it
            for section in (("spec", "states"), ("spec", "setup", "states")):
                self.place_states(section)
        doc = SourceDoc(self.data, self.root.file, self.lines, self.origins,
                        digest=self.digest())
        return Assembled(doc, tuple(f.path for f in self.fragments))

    def digest(self) -> str:
        """The assembled document's :attr:`SourceDoc.digest`: of the itinerary's text and of
        each fragment's, in order, with the names they were read by (which messages show) and
        the files they resolved to; empty when a part's is not known."""
        parts = [(self.root.file, str(self.path), self.root.digest),
                 *((f.label, str(f.path), f.doc.digest) for f in self.fragments)]
        if not all(digest for _, _, digest in parts):
            return ""
        h = hashlib.sha256(b"smrun-assembled-1")
        for part in parts:
            for text in part:
                data = text.encode("utf-8", "surrogatepass")
                h.update(len(data).to_bytes(8, "big"))
                h.update(data)
        return h.hexdigest()

    def collect(self, doc: SourceDoc, path: Path, chain: tuple[Path, ...]) -> None:
        """The fragments ``doc`` includes, depth first, each once; cycles are refused."""
        include = doc.data["spec"].get("include")
        if include is None:
            return
        if not isinstance(include, list) or not all(isinstance(i, str) and i for i in include):
            self.problems.append(doc.problem(("spec", "include"),
                                             "a list of fragment files (relative to this file)"))
            return
        for index, written in enumerate(include):
            at: DocPath = ("spec", "include", index)
            label = Path(os.path.normpath(path.parent / written))
            resolved = label.resolve()
            if resolved in chain:
                names = " -> ".join(p.name for p in (*chain, resolved))
                self.problems.append(doc.problem(at, f"include cycle: {names}"))
                continue
            if resolved in self.seen:
                continue  # included already (through another fragment): once is enough
            if not label.is_file():
                self.problems.append(doc.problem(at, f"fragment file {written!r} does not exist "
                                                     f"(looked for {label})"))
                continue
            fragment = self.load_fragment(label, at, doc)
            if fragment is None:
                continue
            self.seen.add(resolved)
            self.fragments.append(fragment)
            self.collect(fragment.doc, label, (*chain, resolved))

    def load_fragment(self, label: Path, at: DocPath, by: SourceDoc) -> _Fragment | None:
        from statemachine.schema import problems as schema_problems

        try:
            doc = load(label)
            expect(doc.data, doc.file, FRAGMENT_KIND, doc.lines.get(("kind",)))
        except SchemaError as exc:
            self.problems.extend(exc.problems or [by.problem(at, str(exc))])
            return None
        found = schema_problems(doc, "itinerary-fragment")
        if found:
            self.problems.extend(found)
            return None
        return _Fragment(doc, label.resolve(), str(label))

    # -- merging -------------------------------------------------------------------------------

    @staticmethod
    def names(doc: SourceDoc, kind: str) -> Iterator[tuple[str, DocPath]]:
        section = doc.data["spec"].get(kind)
        if isinstance(section, dict):
            for name in section:
                yield str(name), ("spec", kind, name)
        elif isinstance(section, list):
            for index, entry in enumerate(section):
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    yield entry["name"], ("spec", kind, index, "name")

    def taken(self, kind: str, label: str, name: str, doc: SourceDoc, at: DocPath) -> bool:
        """Whether ``name`` is defined already (a problem at ``at``, naming the other place)."""
        other = self.defined.setdefault(kind, {}).get(name)
        if other is None:
            self.defined[kind][name] = (doc, at)
            return False
        other_doc, other_at = other
        self.problems.append(doc.problem(at, f"{label} {name!r} is also defined at "
                                             f"{other_doc.where(other_at)}; a name may be "
                                             "defined once in an itinerary and its fragments"))
        return True

    def copy_lines(self, doc: SourceDoc, source: DocPath, target: DocPath) -> None:
        """The lines of ``doc`` under ``source``, recorded under ``target`` (in ``doc``'s file)."""
        cut = len(source)
        for path, line in doc.lines.items():
            if path[:cut] == source:
                moved = (*target, *path[cut:])
                self.lines[moved] = line
                self.origins[moved] = (doc.file, path)

    def merge(self, fragment: _Fragment) -> None:
        doc, spec = fragment.doc, fragment.doc.data["spec"]
        for kind, label in _MAPPINGS:
            into = self.spec.setdefault(kind, {})
            if not isinstance(into, dict):
                continue  # the itinerary's own section is malformed: its schema says so
            for name, expr in (spec.get(kind) or {}).items():
                if self.taken(kind, label, name, doc, ("spec", kind, name)):
                    continue
                into[name] = expr
                self.copy_lines(doc, ("spec", kind, name), ("spec", kind, name))
        for kind, label in _LISTS:
            target = self.spec.setdefault(kind, [])
            if not isinstance(target, list):
                continue
            for index, entry in enumerate(spec.get(kind) or []):
                if self.taken(kind, label, entry["name"], doc, ("spec", kind, index, "name")):
                    continue
                self.copy_lines(doc, ("spec", kind, index), ("spec", kind, len(target)))
                target.append(entry)
        for index, state in enumerate(spec.get("states") or []):
            if self.taken("states", "state", state["name"], doc, ("spec", "states", index, "name")):
                continue
            self.library[state["name"]] = (fragment, index)

    def check_root_states(self) -> None:
        """An itinerary's own state may not take the name of a fragment's state."""
        for section in (("spec", "states"), ("spec", "setup", "states")):
            for index, state in enumerate(self.at(section) or []):
                name = state.get("name") if isinstance(state, dict) and "use" not in state else None
                if isinstance(name, str) and name in self.library:
                    fragment, k = self.library[name]
                    self.problems.append(self.root.problem(
                        (*section, index, "name"),
                        f"state {name!r} is also defined at "
                        f"{fragment.doc.where(('spec', 'states', k, 'name'))}; place the "
                        f"fragment's state with `use: {name}`, or rename this one"))

    def at(self, section: DocPath) -> Any:
        node: Any = self.data
        for key in section:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def place_states(self, section: DocPath) -> None:
        """Each ``use: NAME`` entry of ``section`` becomes the fragment's state, patched."""
        states = self.at(section)
        if not isinstance(states, list):
            return
        for index, entry in enumerate(states):
            if not isinstance(entry, dict) or "use" not in entry:
                continue
            at: DocPath = (*section, index)
            name = entry["use"]
            found = self.library.get(name) if isinstance(name, str) else None
            if found is None:
                self.problems.append(self.root.problem((*at, "use"), self.unknown_state(name)))
                continue
            fragment, k = found
            base = copy.deepcopy(fragment.doc.data["spec"]["states"][k])
            own = {p: line for p, line in self.lines.items() if p[:len(at)] == at and p != at}
            for path in own:
                del self.lines[path]
            self.copy_lines(fragment.doc, ("spec", "states", k), at)
            patch = {key: value for key, value in entry.items() if key != "use"}
            states[index] = self.patch(base, patch, at)
            for path, line in own.items():  # what the itinerary wrote is reported there
                self.lines[path] = line
                self.origins.pop(path, None)
            if at in self.root.lines:  # the entry itself: where the itinerary places the state
                self.lines[at] = self.root.lines[at]
                self.origins.pop(at, None)

    def patch(self, base: Any, patch: Any, path: DocPath) -> Any:
        """JSON merge patch (RFC 7386) of ``patch`` over ``base``; a replaced or removed
        field's fragment lines are forgotten."""
        if not isinstance(patch, dict) or not isinstance(base, dict):
            self.forget(path)
            return patch
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
                self.forget((*path, key))
            elif key in out:
                out[key] = self.patch(out[key], value, (*path, key))
            else:
                out[key] = value
        return out

    def forget(self, path: DocPath) -> None:
        for recorded in [p for p in self.lines if p[:len(path)] == path]:
            del self.lines[recorded]
            self.origins.pop(recorded, None)

    def unknown_state(self, name: Any) -> str:
        if not self.fragments:
            return f"`use: {name}` needs a fragment that has state {name!r} in spec.include"
        known = sorted(self.library)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return (f"no included fragment has a state {name!r}{hint}; their states: "
                f"{', '.join(known) or 'none'}")

