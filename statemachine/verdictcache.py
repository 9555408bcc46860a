"""A disk cache of "this document is valid under this packaged JSON Schema" (issue 17 item 1).

Why: every command validates its plan and its itinerary against the packaged schemas. That needs
``jsonschema`` (~50 ms to import: it compiles its format regexes and builds its metaschema
registry) and ~20 ms of validation for the built-in live itinerary, the same work on every start
for the same text. A later process that meets the same document under the same schema skips both.

What it does not change: only a clean verdict (no problem at all) is stored, so an invalid
document is validated (and fails) again every time, with the same messages; a hit is a verdict
that this same validation produced for this same data. The key covers everything the verdict
depends on: the schema's bytes, the document's data (canonical JSON; a value that is not JSON,
such as a YAML timestamp, is written with its type so it cannot collide with a string, and data
that cannot be written canonically is simply not cached), smrun's version, and the installed
``jsonschema`` (the path, size and mtime of its package ``__init__``, found without importing
it: an upgrade changes them) and Python's bytecode magic number.

Where: beside the template code cache (:func:`statemachine.cachedir.cache_dir`), in a sub-folder
``verdicts``; ``SMRUN_CACHE_DIR=off`` disables both. Trust: an entry makes smrun skip a check, so
the folder is used only when it is owned by the current user and writable by nobody else (as for
the code cache). An entry holds its own key, written to a private temporary name and renamed into
place, so a reader sees a whole entry or none; concurrent writers of the same entry write the same
bytes. Any failure to read or write is a miss, never an error.

Other clean verdicts use the same folder and entries (:func:`remember`/:func:`recall`): the
semantic checks of an itinerary (:mod:`statemachine.itinerary_verdict`), whose entry also holds
what a hit must give back (the warnings) after its key. Their keys are hashes of other inputs
with another prefix, so they cannot meet a schema verdict's.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from importlib.util import MAGIC_NUMBER, find_spec
from pathlib import Path
from typing import Any

from statemachine.cachedir import cache_dir

__all__ = ["is_valid", "package_identity", "recall", "remember", "remember_valid", "verdict_key"]

_FORMAT = b"smrun-verdict-1"


def _open_folder() -> Path | None:
    # Looked up on every use (a mkdir and a stat, ~20 us; two per command): SMRUN_CACHE_DIR may
    # change within a process (the operator, tests) and a folder made unsafe is noticed at once.
    try:
        jinja = cache_dir()
        if jinja is None:
            return None
        folder = jinja.parent / "verdicts"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return None  # someone else's folder: never trust a verdict from it
        if info.st_mode & 0o022:
            return None  # others may write entries there: likewise
    except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
        return None
    return folder


def package_identity(name: str) -> str:
    """The installed package ``name`` by the path, size and mtime of its ``__init__``, found
    without importing it (an upgrade changes them); raises ``OSError`` if it cannot be read."""
    spec = find_spec(name)
    origin = spec.origin if spec is not None else None
    if not origin:
        return f"{name}:?"
    info = os.stat(origin)
    return f"{origin}:{info.st_size}:{info.st_mtime_ns}"


def _validator_identity() -> str:
    return package_identity("jsonschema")


def _typed(value: Any) -> str:
    # YAML and the plan loader refuse control characters, so no document string starts with NUL:
    # a typed value can never equal a string of the document.
    return f"\0{type(value).__module__}.{type(value).__qualname__}:{value!r}"


def _only_string_keys(data: Any) -> None:
    # json.dumps would write the key 1 as "1": two documents the schema tells apart, one key.
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                raise TypeError("a mapping key that is not a string")
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


def verdict_key(schema_bytes: bytes, data: Any) -> str | None:
    """The key of ``data`` under a schema, or ``None`` when ``data`` cannot be keyed safely."""
    from statemachine import __version__

    try:
        _only_string_keys(data)
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=True,
                               separators=(",", ":"), default=_typed)
        identity = _validator_identity()
    except (TypeError, ValueError, OSError, RecursionError):
        return None  # mixed key types, a cycle...: validate every time
    h = hashlib.sha256(_FORMAT)
    for part in (__version__.encode(), MAGIC_NUMBER, identity.encode("utf-8", "surrogatepass"),
                 hashlib.sha256(schema_bytes).digest(),
                 canonical.encode("utf-8", "surrogatepass")):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def is_valid(key: str | None) -> bool:
    """Whether a clean verdict is stored under ``key``."""
    return recall(key) == b""


def remember_valid(key: str | None) -> None:
    """Store a clean verdict under ``key`` (atomically; a failure is ignored)."""
    remember(key)


def recall(key: str | None) -> bytes | None:
    """What :func:`remember` stored with the clean verdict under ``key`` (``b""`` for a bare
    verdict), or ``None``: no entry, or one that does not hold its key."""
    folder = _open_folder() if key is not None else None
    if folder is None or key is None:
        return None
    try:
        data = (folder / key).read_bytes()
    except OSError:
        return None
    head = key.encode()
    return data[len(head):] if data.startswith(head) else None


def remember(key: str | None, detail: bytes = b"") -> None:
    """Store a clean verdict under ``key``, with ``detail`` (what a hit must give back, such as
    the warnings of itinerary checks: see :mod:`statemachine.itinerary_verdict`), atomically; a
    failure is ignored. An entry is its key followed by the detail."""
    folder = _open_folder() if key is not None else None
    if folder is None or key is None:
        return
    target = folder / key
    tmp = folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        with open(tmp, "xb") as out:
            out.write(key.encode() + detail)
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
