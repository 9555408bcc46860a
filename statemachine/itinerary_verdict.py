"""The clean verdict of an itinerary's semantic checks, kept between runs (issue 17 item 1).

Why: every ``smrun run``/``validate`` loads its itinerary, and the semantic checks
(:mod:`statemachine.itinerary_checks`: Jinja2 lexing of every expression and template for the
names it uses, compiling each one, loading every template file) were about half of the ~40 ms
that loading the built-in live itinerary took on the way to the first VM: the same work on
every start for the same files. A later process that meets the same itinerary skips them.

What it does not change: only a clean verdict (no problem at all) is stored, with its warnings,
so a failing itinerary is checked (and fails) again every time, with the exact messages; a hit
gives back the warnings the checks gave. The key covers everything the checks read:

- the itinerary document: the digest of the text of the itinerary and of every fragment it
  includes, as they were parsed, with the names they were read by and the files they resolved
  to (:attr:`statemachine.yamlsource.SourceDoc.digest`), the itinerary's file name (messages
  show it) and its template folder;
- the code that checks: smrun's version, Python's bytecode magic number, the package's folder
  and its built-in templates folder, and the name, size and mtime of every module of the
  ``statemachine`` package's top level (the checks, the loader, the expression environment
  with its filters, the name and field-path scanners...: in a development tree the version
  alone does not change when they do), of the field-name table of known kinds with its loader
  (``sim/data/kind-fields.json``, ``sim/schemas.py``), and of the installed Jinja2, PyYAML and
  ``jsonschema`` (which checks parameter schemas);
- the template files the checks read, which only the checks themselves find (an action's
  template and every template it includes): the entry lists each one's file and the digest of
  its text, and the files earlier in the search path that did not exist (one created there
  would be used instead); a hit reads them all again and is a miss if any differs.

The checks have one side effect that rendering relies on, and a hit skips it: they compile the
expressions and template files into the shared environments (``expressions.template_environment``).
A hit leaves that to the first render of each, which compiles through the code cache
(:mod:`statemachine.codecache`), and only what a run renders (measured in docs/performance.md).
Nothing else reads what the checks leave behind.

Where and how: the verdict cache (:mod:`statemachine.verdictcache`: same folder, same trust
rules, atomic entries, any failure a miss); ``SMRUN_CACHE_DIR=off`` disables it.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
from functools import lru_cache
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from typing import TYPE_CHECKING

from statemachine import verdictcache
from statemachine.errors import Problem
from statemachine.yamlsource import SourceDoc, text_digest

if TYPE_CHECKING:
    from statemachine.itinerary import Itinerary
    from statemachine.itinerary_checks import Findings

__all__ = ["checks_key", "recall", "remember"]

_FORMAT = b"smrun-itinerary-checks-1"
_PACKAGES = ("jinja2", "yaml", "jsonschema")
# Below the top level, what the checks read: the field-name table of known kinds (fieldpaths.py)
# and its loader (with its package). A check that comes to read another file must add it here
# (tests/test_itinerary_verdict.py checks that every module the checks import is covered).
_ALSO = ("sim/__init__.py", "sim/schemas.py", "sim/data/kind-fields.json")


@lru_cache(maxsize=1)
def _code_identity() -> bytes:
    # Once per process (~45 stats, ~0.1 ms): the modules a process runs do not change under it.
    from statemachine import __version__

    from statemachine.resources import data_dir

    package = Path(__file__).parent
    # The folders too: another install (another built-in templates folder, which every search
    # path ends with) is another key even where its modules look the same.
    parts = [__version__, repr(MAGIC_NUMBER), str(package), str(data_dir("templates"))]
    for entry in sorted(os.scandir(package), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            info = entry.stat()
            parts.append(f"{entry.name}:{info.st_size}:{info.st_mtime_ns}")
    for name in _ALSO:
        info = os.stat(package / name)
        parts.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
    parts.extend(verdictcache.package_identity(name) for name in _PACKAGES)
    return "\n".join(parts).encode("utf-8", "surrogatepass")


def checks_key(itinerary: Itinerary, doc: SourceDoc) -> str | None:
    """The key of the checks' verdict on ``itinerary`` (built from ``doc``), or ``None`` when
    it cannot be keyed (a document whose text is not known)."""
    if not doc.digest:
        return None
    try:
        code = _code_identity()
    except Exception:  # noqa: BLE001 - an unreadable module or data folder: check every time
        return None
    h = hashlib.sha256(_FORMAT)
    for part in (code, doc.digest.encode(), str(itinerary.file).encode("utf-8", "surrogatepass"),
                 str(itinerary.template_dir).encode("utf-8", "surrogatepass")):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _template_text(file: str) -> str:
    # As Jinja2's FileSystemLoader reads a template (text mode, UTF-8: newlines translated).
    with open(file, encoding="utf-8") as fh:
        return fh.read()


def recall(key: str | None) -> tuple[Problem, ...] | None:
    """The warnings of the clean verdict stored under ``key``, or ``None``: no entry, an
    unreadable one, or a template file that changed (or would now be found elsewhere)."""
    detail = verdictcache.recall(key)
    if detail is None:
        return None
    try:
        entry = json.loads(detail)
        for file, digest in entry["templates"]:
            if digest is None:
                if os.path.isfile(file):
                    return None  # a template created earlier in the search path: used instead
            elif text_digest(_template_text(file)) != digest:
                return None
        return tuple(Problem(str(f), str(p), str(m), line if isinstance(line, int) else None,
                             column if isinstance(column, int) else None)
                     for f, p, m, line, column in entry["warnings"])
    except (OSError, ValueError, TypeError, KeyError):  # a corrupt entry or a file gone: a miss
        return None


def remember(key: str | None, found: Findings) -> None:
    """Store the verdict of ``found`` under ``key``, if it is clean (no problem) and every
    template file it read can be named (else nothing is stored)."""
    if key is None or found.problems:
        return
    from jinja2.loaders import split_template_path  # the checks have imported Jinja2 already

    templates: list[tuple[str, str | None]] = []
    for name, seen in sorted(found.templates.items()):
        if seen is None:
            return
        text, file = seen
        try:
            pieces = split_template_path(name)
        except Exception:  # noqa: BLE001 - a name the loader refuses: keep checking every time
            return
        for folder in found.search_path:
            candidate = posixpath.join(folder, *pieces)
            if os.path.normpath(candidate) == file:
                templates.append((candidate, text_digest(text)))
                break
            templates.append((candidate, None))
        else:
            return  # not where the search path leads: do not guess
    warnings = [(w.file, w.path, w.message, w.line, w.column) for w in found.warnings]
    verdictcache.remember(key, json.dumps({"templates": templates, "warnings": warnings},
                                          separators=(",", ":")).encode())
