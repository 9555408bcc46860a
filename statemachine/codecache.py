"""A disk cache of the Python code Jinja2 generates for smrun's expressions and templates.

Why (issue 8, start-up time): every command that loads an itinerary compiles each of its
expressions, template strings and template files to find syntax errors (itinerary_checks.py), and
Jinja2's code generation is pure Python: ~0.1 s of a ~0.45 s start for the built-in live
itinerary, the same work on every start for the same text. The cache keeps the compiled code
object of each text that compiled, so a later process executes it instead of generating it again.

What it does not change: only code that compiled is stored, so a text that fails to compile is
compiled (and fails) again every time, with the same error; a hit is code that this same
configuration produced from this same text. The key covers everything the generated code depends
on: the text, the template name and file name (they are part of the code, for error lines),
:func:`environment_digest` (Jinja2, Python and smrun versions, the environment's class and code
generation options, the names of its filters and tests: an unknown filter is a compile-time error)
and the Python bytecode magic number (``marshal`` is only valid for the Python that wrote it).

How: :class:`CachingEnvironment` (the base of smrun's sandboxed environment) stores and reuses
the code of expressions and template strings; :class:`TemplateLoader` does the same for template
files and also records the templates each file includes, so the itinerary checks need no second
parse to find them.

Where: ``$SMRUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/smrun``, else ``~/.cache/smrun``, in a
sub-folder ``jinja``. ``SMRUN_CACHE_DIR=off`` (or empty) disables the cache. The folder is made
private (0700) and is not used unless it is owned by the current user and writable by nobody
else (its files are code that is executed, like ``__pycache__``). Every failure to read or write
an entry, or a corrupt entry, is a miss, never an error: the cache can be deleted at any time.
Entries are not evicted; one entry is a few KB per distinct text.
"""
from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import threading
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from types import CodeType
from typing import Any

from jinja2 import Environment, FileSystemLoader, Template, TemplateSyntaxError, nodes

from statemachine.cachedir import cache_dir

__all__ = ["CachingEnvironment", "CodeCache", "TemplateLoader", "cache_dir", "environment_digest", "literal_references",
           "open_cache"]

_FORMAT = 1  # bump when the entry layout below changes


def environment_digest(env: Any) -> str:
    """What, besides the text, decides the code Jinja2 generates in ``env``."""
    import jinja2

    from statemachine import __version__

    options = (
        type(env).__module__, type(env).__qualname__, getattr(env, "sandboxed", False),
        env.block_start_string, env.block_end_string, env.variable_start_string,
        env.variable_end_string, env.comment_start_string, env.comment_end_string,
        env.line_statement_prefix, env.line_comment_prefix, env.trim_blocks, env.lstrip_blocks,
        env.newline_sequence, env.keep_trailing_newline, repr(env.autoescape), env.optimized,
        env.is_async, repr(env.finalize), sorted(env.extensions),
        env.undefined.__module__, env.undefined.__qualname__,
        sorted(env.filters), sorted(env.tests),
    )
    text = repr((_FORMAT, jinja2.__version__, __version__, MAGIC_NUMBER, options))
    return hashlib.sha256(text.encode()).hexdigest()


class CodeCache:
    """Compiled code (and the templates each one references) by text, in one folder."""

    def __init__(self, folder: Path, digest: str) -> None:
        self.folder = folder
        self.digest = digest

    def _path(self, kind: str, name: str | None, filename: str | None, source: str) -> Path:
        h = hashlib.sha256()
        for part in (self.digest, kind, name or "", filename or "", source):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        return self.folder / f"{h.hexdigest()}.bin"

    def get(self, kind: str, source: str, *, name: str | None = None,
            filename: str | None = None) -> tuple[CodeType, tuple[str, ...]] | None:
        """The code stored for this text, and its referenced templates; ``None``: a miss."""
        try:
            data = self._path(kind, name, filename, source).read_bytes()
            magic, code, refs = marshal.loads(data)
        except Exception:  # noqa: BLE001 - missing, unreadable or corrupt: compile instead
            return None
        if magic != MAGIC_NUMBER or not isinstance(code, CodeType) or not isinstance(refs, tuple):
            return None
        return code, tuple(str(r) for r in refs)

    def put(self, kind: str, source: str, code: CodeType, references: Iterable[str] = (), *,
            name: str | None = None, filename: str | None = None) -> None:
        """Store ``code`` for this text (atomically; a failure is ignored)."""
        target = self._path(kind, name, filename, source)
        # Written beside the entry under a name no other process or thread uses, then renamed:
        # a reader sees a whole entry or none. (Cheaper than tempfile.mkstemp, which mattered
        # for the first run: ~120 entries for the live itinerary.)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            data = marshal.dumps((MAGIC_NUMBER, code, tuple(references)))
            with open(tmp, "xb") as out:
                out.write(data)
            os.replace(tmp, target)
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                tmp.unlink()  # a read-only or full disk only costs the speed-up


def open_cache(env: Any) -> CodeCache | None:
    """The cache for ``env``, or ``None`` (disabled, or the folder is unusable or not ours)."""
    try:
        folder = cache_dir()
        if folder is None:
            return None
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            return None  # someone else's folder: never execute code from it
        if info.st_mode & 0o022:
            return None  # others may write entries there: likewise
    except (OSError, RuntimeError):  # RuntimeError: no home folder to be found
        return None
    return CodeCache(folder, environment_digest(env))


class CachingEnvironment(Environment):
    """A Jinja2 environment whose compiles can go through the disk cache.

    It records the code object of the last compile on each thread, so that the code of an
    expression or template string compiled the ordinary way (``compile_expression``,
    ``from_string``: same errors, same code) can be stored, and builds templates from stored code.
    """

    _last = threading.local()
    _code_cache: CodeCache | None = None
    _code_cache_opened = False

    @property
    def code_cache(self) -> CodeCache | None:
        """The disk cache of this environment's compiled code, opened on first use: after the
        filters are set (their names are part of its key), and never for an environment that
        compiles nothing (one used only to parse)."""
        if not self._code_cache_opened:
            self._code_cache = open_cache(self)
            self._code_cache_opened = True
        return self._code_cache

    def compile(self, source: Any, name: str | None = None, filename: str | None = None,
                raw: bool = False, defer_init: bool = False) -> Any:
        if raw:
            return super().compile(source, name, filename, True, defer_init)
        code = super().compile(source, name, filename, False, defer_init)
        CachingEnvironment._last.code = code
        return code

    def last_code(self) -> CodeType | None:
        """The code object this thread compiled last (``None`` if it was raw source)."""
        code = getattr(CachingEnvironment._last, "code", None)
        return code if isinstance(code, CodeType) else None

    def from_cached_code(self, code: CodeType, uptodate: Callable[[], bool] | None = None,
                         globals: MutableMapping[str, Any] | None = None) -> Template:
        """A template from code this configuration compiled before (what ``from_string`` and
        the loaders do after compiling)."""
        return self.template_class.from_code(self, code, self.make_globals(globals), uptodate)

    def through_cache(self, kind: str, text: str, compile_text: Callable[[], Any],
                      from_code: Callable[[CodeType], Any]) -> Any:
        """``compile_text()``, or the same from the code the disk cache kept for ``text``."""
        cache = self.code_cache
        hit = cache.get(kind, text) if cache is not None else None
        if hit is not None:
            return from_code(hit[0])
        compiled = compile_text()  # raises for a text that does not compile: nothing is stored
        if cache is not None and (code := self.last_code()) is not None:
            cache.put(kind, text, code)
        return compiled


class TemplateLoader(FileSystemLoader):
    """The file loader: compiles through the disk cache, and remembers the templates each loaded
    template includes, imports or extends by a literal name (for the itinerary checks, which
    report a missing one), so that a template file is parsed once, not twice."""

    def __init__(self, searchpath: Sequence[str]) -> None:
        super().__init__(searchpath)
        self.references: dict[str, tuple[str, ...]] = {}

    def load(self, environment: Environment, name: str,
             globals: MutableMapping[str, Any] | None = None) -> Template:
        source, filename, uptodate = self.get_source(environment, name)
        cache = getattr(environment, "code_cache", None)
        hit = cache.get("file", source, name=name, filename=filename) if cache else None
        if hit is not None:
            code, refs = hit
        else:
            tree = environment.parse(source, name, filename)
            refs = literal_references(tree)
            try:
                code = environment.compile(tree, name, filename)
            except TemplateSyntaxError as exc:
                exc.source = source  # as compiling the text (not the tree) would have set it
                raise
            if cache is not None:
                cache.put("file", source, code, refs, name=name, filename=filename)
        self.references[name] = refs
        return environment.template_class.from_code(environment, code,
                                                    environment.make_globals(globals), uptodate)


def literal_references(tree: nodes.Template) -> tuple[str, ...]:
    """Templates named by a literal in an include/import/extends of ``tree`` (not ``ignore
    missing``), in order, each once."""
    found: list[str] = []
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        target = getattr(node, "template", None)
        if getattr(node, "ignore_missing", False) or not isinstance(target, nodes.Const):
            continue
        found.append(str(target.value))
    return tuple(dict.fromkeys(found))
