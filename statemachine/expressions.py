"""The one sandboxed Jinja2 setup for templates and expressions, with smrun's helpers and filters.

Itineraries and templates may come from other people, so everything is rendered in
``jinja2.sandbox.ImmutableSandboxedEnvironment``: no access to ``__dunder__`` attributes, no
mutation of lists/dicts, and the only files a template can reach are the ones on its loader's
search path (the itinerary's template folder, then the built-in one). Touching an unsafe attribute
raises at once instead of quietly yielding undefined.

Two undefined policies, decided here once:

* **Templates** (``render_text``, ``render_string``, ``render_value``) use ``StrictUndefined``:
  an undefined variable *or* missing field is an error naming the template file and line.
* **Expressions** (``evaluate``: readiness conditions, predicates, ``forEach``, ``outputs``,
  ``progress``, ``when``) are strict for *variables* (a typo like ``objct`` is an error) but
  lenient for *fields*: ``object.status.phase`` on an object with no status is undefined, which is
  falsy, equal to nothing, compares false and chains (``object.a.b.c``). ``evaluate`` returns
  ``None`` for an undefined result, unless asked for a defined one (``defined=True``, what a
  ``forEach`` needs): then the missing field is an error naming it, with a "did you mean" from
  the keys the object has.

Expressions, template strings and template files are compiled once per process and cached: the
itinerary checks compile them to find syntax errors, and rendering and evaluation later reuse that
same compiled code (one environment per template folder, :func:`template_environment`). The code
Jinja2 generates is also kept on disk across processes (:mod:`statemachine.codecache`; only code
that compiled, so errors are the same). This module renders and evaluates; it does not parse the
rendered YAML (``render.py`` does) and knows nothing about itineraries.
"""
from __future__ import annotations

import base64
import copy
import datetime as _dt
import hashlib
import json
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from jinja2 import (ChainableUndefined, StrictUndefined, TemplateError as JinjaError,
                    TemplateNotFound, TemplateSyntaxError, Undefined, UndefinedError, nodes,
                    pass_context)
from jinja2.environment import TemplateExpression
from jinja2.runtime import Context
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from statemachine import budget
from statemachine.codecache import CachingEnvironment, TemplateLoader, literal_references
from statemachine.errors import RenderBudgetExceeded, TemplateError
from statemachine.resources import data_dir

__all__ = [
    "make_environment", "render_text", "render_string", "render_value", "evaluate",
    "compile_expression", "compile_template", "is_undefined", "SERVER_FIELDS",
    "template_environment", "referenced_templates", "describe_undefined",
]

# Fields a live object carries that must not be sent back when creating a copy elsewhere.
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "ownerReferences",
                 "generation", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")


class _FieldUndefined(ChainableUndefined):
    """Undefined for expressions: strict for variables, lenient (chainable, falsy) for fields."""

    __slots__ = ()

    def __new__(cls, hint: str | None = None, obj: Any = missing, name: str | None = None,
                exc: type[TemplateRuntimeError] = UndefinedError) -> Any:
        if obj is missing and hint is None and name is not None:
            # An undefined *variable*: a typo in an expression must not silently be false forever.
            return StrictUndefined(hint, obj, name, exc)
        return super().__new__(cls)

    def _self(self, *args: Any, **kwargs: Any) -> _FieldUndefined:
        return self

    def _false(self, other: Any) -> bool:
        return False

    # A missing field compares false and absorbs arithmetic, so `object.status.x > 0` is just false.
    # (Undefined types these as raising; overriding them is the point.)
    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _self  # type: ignore[assignment]
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _self  # type: ignore[assignment]
    __mod__ = __rmod__ = __neg__ = __pos__ = _self  # type: ignore[assignment]


#: Every name an instance of ``dict`` has as an attribute (its class's and ``object``'s).
_DICT_NAMES = frozenset(name for cls in dict.__mro__ for name in vars(cls))


class _Environment(CachingEnvironment, ImmutableSandboxedEnvironment):
    """The sandbox, failing loudly on unsafe attribute access instead of returning undefined;
    its compiles go through the disk cache (``codecache.CachingEnvironment``); renders within
    the render budget (:mod:`statemachine.budget`): ``*``, ``**``, ``+`` and ``%`` are checked
    before they run, every call is a step, and every ``{% for %}`` iterable is wrapped so that
    each iteration is one (a tree rewrite before code generation, so the cached code has it)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        budget.check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        for loop in source.find_all(nodes.For):
            it = loop.iter
            if not (isinstance(it, nodes.Filter) and it.name == budget.LOOP_FILTER):
                loop.iter = nodes.Filter(it, budget.LOOP_FILTER, [], [], None, None,
                                         lineno=it.lineno)
        return super()._generate(source, name, filename, defer_init)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # A plain dict, not Jinja2's ChainMap over the environment's globals: every evaluation
        # copies the globals into its new context, and iterating a ChainMap was ~8% of the
        # engine's CPU at 100 VMs. Our globals are fixed when the environment is made, before
        # anything compiles, so nothing is lost by taking them once.
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Decision (issue 17, tenth session): a field of a plain dict (``reads.sourceVM.spec``,
        # ``vm.name``) is the dict's item. The sandbox's own getattr asks for the attribute
        # first and takes the item once that has raised AttributeError: a raised exception on
        # every field of every read object, ~7 % of preflight's CPU. For an exact ``dict`` and a
        # name no class in dict's MRO defines (no instance of it has any other attribute), the
        # attribute lookup can only fail, so going to the item at once answers the same (a
        # missing key: the same undefined). Anything else (``items``, a subclass, an object)
        # takes the sandbox's path.
        if type(obj) is dict and type(attribute) is str and attribute not in _DICT_NAMES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object "
                            "is not allowed in smrun templates")



# ---------------------------------------------------------------------------------------------
# helpers and filters

def is_undefined(value: Any) -> bool:
    """True for Jinja's undefined values (missing fields in expressions)."""
    return isinstance(value, Undefined)


def _plain(value: Any) -> Any:
    return None if isinstance(value, Undefined) else value


def _defined(value: Any) -> Any:
    """Like ``_plain``, but a strictly undefined value (a template typo) raises instead of
    silently becoming ``null``; lenient missing fields in expressions still give ``None``."""
    if isinstance(value, StrictUndefined):
        value._fail_with_undefined_error()
    return _plain(value)


def _conditions(obj: Any) -> list[Mapping[str, Any]]:
    obj = _plain(obj)
    if not isinstance(obj, Mapping):
        return []
    status = obj.get("status")
    conds = status.get("conditions") if isinstance(status, Mapping) else None
    return [c for c in conds if isinstance(c, Mapping)] if isinstance(conds, list) else []


def condition(obj: Any, type_: str) -> Mapping[str, Any] | None:
    """The condition of ``type_`` in ``obj.status.conditions``, or ``None``."""
    for cond in _conditions(obj):
        if str(cond.get("type", "")).casefold() == str(type_).casefold():
            return cond
    return None


def condition_is(obj: Any, type_: str, status: str = "True") -> bool:
    """kubectl wait semantics: the condition exists and its status matches (case-insensitive)."""
    cond = condition(obj, type_)
    return cond is not None and str(cond.get("status", "")).casefold() == str(status).casefold()


def condition_true(obj: Any, type_: str) -> bool:
    """The condition of ``type_`` exists with status ``True``."""
    return condition_is(obj, type_, "True")


def jsonpath_text(value: Any) -> str:
    """A value as ``kubectl get -o jsonpath`` prints it (for the ``jsonpath=`` shorthand)."""
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


@pass_context
def storage_for(ctx: Context, storage_class: Any) -> Mapping[str, Any] | None:
    """The plan's storage map destination for a source storage class (``None``: unmapped)."""
    storage_class = _plain(storage_class)
    for entry in _map_entries(ctx, "storage"):
        if entry.get("source") == storage_class:
            dest = entry.get("destination")
            return dest if isinstance(dest, Mapping) else {"storageClass": dest}
    return None


@pass_context
def network_for(ctx: Context, network: Any) -> Mapping[str, Any] | None:
    """The plan's network map destination for a VM network entry (or a network name)."""
    network = _plain(network)
    vm = _plain(ctx.get("vm"))
    vm_ns = vm.get("namespace") if isinstance(vm, Mapping) else None
    wanted_pod = isinstance(network, Mapping) and "pod" in network
    name: Any = network
    if isinstance(network, Mapping):
        multus = network.get("multus")
        name = multus.get("networkName") if isinstance(multus, Mapping) else None
    for entry in _map_entries(ctx, "network"):
        source = entry.get("source")
        if not isinstance(source, Mapping):
            source = {"name": source}
        if wanted_pod and source.get("type") == "pod":
            return _dest(entry)
        src_name = source.get("name")
        if name and src_name and (src_name == name or (vm_ns and "/" not in str(name)
                                                       and src_name == f"{vm_ns}/{name}")):
            return _dest(entry)
    return None


def _dest(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    dest = entry.get("destination")
    return dest if isinstance(dest, Mapping) else None


def _map_entries(ctx: Context, kind: str) -> list[Mapping[str, Any]]:
    plan = _plain(ctx.get("plan"))
    mapping = plan.get("map") if isinstance(plan, Mapping) else None
    entries = mapping.get(kind) if isinstance(mapping, Mapping) else None
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []


def dns_name(text: Any) -> str:
    """Lower-case DNS-1123 label of at most 63 characters; hash-suffixed when shortened."""
    raw = str(_plain(text) or "")
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-") or "x"
    if len(name) <= 63 and name == raw:
        return name
    if len(name) > 63:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def time_after(timestamp: Any, seconds: Any) -> str | None:
    """``timestamp`` (RFC 3339) plus ``seconds``, as RFC 3339 in UTC; ``None`` if either is missing.
    For waits such as ``wait: {until: "time_after(outputs.roundEnded, settings.precopyInterval)"}``."""
    timestamp, seconds = _plain(timestamp), _plain(seconds)
    if timestamp in (None, "") or seconds is None:
        return None
    moment = _dt.datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    later = moment + _dt.timedelta(seconds=float(seconds))
    return later.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> str:
    """The current time, RFC 3339 in UTC (``2026-11-26T00:25:00Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tojson(value: Any) -> str:
    """JSON (valid YAML) for any value; unlike Jinja's built-in it does not HTML-escape."""
    return json.dumps(_defined(value), ensure_ascii=False, sort_keys=False)


# libyaml's emitter when PyYAML has it: the same YAML as the pure-Python one (both safe
# dumpers, same options), 5-10x faster; it was a quarter of rendering a VM's manifests.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def toyaml(value: Any) -> str:
    """Block YAML for a value, without the trailing newline (combine with ``indent``)."""
    text: str = yaml.dump(_defined(value), Dumper=_DUMPER, default_flow_style=False, sort_keys=False,
                          allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...")


def b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(_defined(value) or "").encode()
    return base64.b64encode(data).decode("ascii")


def b64decode(value: Any) -> str:
    return base64.b64decode(str(_defined(value) or "")).decode("utf-8", errors="replace")


def strip_server_fields(obj: Any) -> Any:
    """A deep copy of ``obj`` without ``status`` and the server-set metadata fields."""
    obj = _plain(obj)
    if not isinstance(obj, Mapping):
        return obj
    out = copy.deepcopy(dict(obj))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in SERVER_FIELDS:
            meta.pop(key, None)
    return out


_GLOBALS: dict[str, Callable[..., Any]] = {
    "condition": condition, "condition_true": condition_true, "condition_is": condition_is,
    "jsonpath_text": jsonpath_text, "storage_for": storage_for, "network_for": network_for,
    "dns_name": dns_name, "now": now, "time_after": time_after,
}
_FILTERS: dict[str, Callable[..., Any]] = {
    "tojson": tojson, "toyaml": toyaml, "b64encode": b64encode, "b64decode": b64decode,
    "strip_server_fields": strip_server_fields, "dns_name": dns_name,
}


# ---------------------------------------------------------------------------------------------
# environments

def make_environment(template_dirs: Sequence[Path | str] = (), *,
                     expressions: bool = False) -> ImmutableSandboxedEnvironment:
    """A new sandboxed environment. ``template_dirs`` is the search path (first wins), followed
    by the built-in templates folder; ``expressions=True`` gives the lenient-field undefined."""
    return _new_environment(template_dirs, expressions=expressions)


def _new_environment(template_dirs: Sequence[Path | str], *, expressions: bool) -> _Environment:
    dirs = [str(d) for d in template_dirs]
    builtin = str(data_dir("templates"))
    if builtin not in dirs:
        dirs.append(builtin)
    env = _Environment(
        loader=TemplateLoader(dirs),
        undefined=_FieldUndefined if expressions else StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        # Decision: YAML-friendly block handling, so `{% if %}` lines leave no blank lines.
        trim_blocks=True,
        lstrip_blocks=True,
        # Template files do not change under a running smrun: no stat per render to check.
        auto_reload=False,
    )
    env.globals.update(_GLOBALS)
    env.filters.update(_FILTERS)
    budget.install(env)
    return env


def template_environment(template_dir: Path | str | None = None) -> ImmutableSandboxedEnvironment:
    """The shared environment for the template files of ``template_dir`` (then the built-in
    ones): what :func:`render_text` uses, so a template compiled by the itinerary checks is not
    compiled again when it is rendered."""
    return _template_env(str(template_dir) if template_dir else None)


# What makes a template render differently for the same context: the clock, Jinja's random
# filter and lorem-ipsum global. Other templates it includes, imports or extends are not looked
# into: such a template is taken as not deterministic.
_IMPURE_NAMES = frozenset({"now", "lipsum"})
_IMPURE_FILTERS = frozenset({"random", "shuffle"})
_IMPURE_WORDS = (*_IMPURE_NAMES, *_IMPURE_FILTERS, "include", "import", "extends")


@lru_cache(maxsize=256)
def deterministic_template(template_name: str, template_dir: str | None = None) -> bool:
    """Whether the template file renders the same text whenever its context is equal (no clock,
    no randomness, no other template): the engine may then render it ahead of time. A template
    that cannot be loaded or parsed is not (its error is raised where it is rendered)."""
    env = template_environment(template_dir)
    try:
        assert env.loader is not None
        tree = env.parse(env.loader.get_source(env, template_name)[0], template_name)
    except Exception:  # noqa: BLE001 - reported by the real render, not here
        return False
    return _pure(tree)


@lru_cache(maxsize=1024)
def deterministic_source(source: str, *, expression: bool) -> bool:
    """Whether an expression (``expression``) or a template string (a reference's name) gives
    the same result whenever its context is equal, by :func:`deterministic_template`'s rules.
    One that does not parse is not (its error is raised where it is evaluated)."""
    if not any(word in source for word in _IMPURE_WORDS):
        return True  # nothing impure can be named: no need to parse it
    try:
        tree = _expression_env().parse(f"{{{{ {source} }}}}" if expression else source)
    except Exception:  # noqa: BLE001 - reported by the real evaluation, not here
        return False
    return _pure(tree)


@dataclass(frozen=True)
class Uses:
    """What an expression reads of its context (:func:`expression_uses`): the top-level names,
    and of ``reads`` and ``values`` the fields it names (``reads.sourceVM``, ``values['x']``);
    ``None`` for ``reads`` or ``values`` used any other way (``reads | length``, ``values[n]``):
    then any of them."""

    names: frozenset[str]
    reads: frozenset[str] | None
    values: frozenset[str] | None


_SPLIT = ("reads", "values")
# The tokens of an expression as Jinja's lexer cuts them, as far as names go: string literals
# (whose text names nothing), names, numbers (``1.5e3``, ``0x1F``; ``x.0`` is an index),
# whitespace and any other character (an operator).
_TOKENS = re.compile(r"""(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<name>[^\W\d]\w*)"""
                     r"|(?P<num>\d[\w.]*)|(?P<ws>\s+)|(?P<op>.)", re.S)
_NOT_VARIABLE_AFTER = frozenset({("op", "."), ("op", "|"), ("name", "is")})
_QUOTED_NAME = re.compile("'[^'\\\\]*'|\"[^\"\\\\]*\"")


@lru_cache(maxsize=8)
def _context_readers(env: _Environment) -> frozenset[str]:
    """The names of ``env``'s globals, filters and tests that read the evaluation's context
    itself (``@pass_context``: ``storage_for`` reads ``plan`` and ``vm``), other than Jinja's
    own filters and tests (``map``, ``select``: they use the context's environment, never its
    variables)."""
    out: set[str] = set()
    for table in (env.globals, env.filters, env.tests):
        for name, fn in table.items():
            if getattr(getattr(fn, "jinja_pass_arg", None), "name", "") == "context" and \
                    not str(getattr(fn, "__module__", "")).startswith("jinja2"):
                out.add(name)
    return frozenset(out)


@lru_cache(maxsize=4096)
def expression_uses(source: str) -> Uses | None:
    """What the expression ``source`` reads of its context, from its tokens; ``None`` when it is
    not deterministic (:func:`deterministic_source`: its result may change with nothing in its
    context changed) or calls a function that reads the context itself (:func:`_context_readers`).
    Conservative: a name counts whether or not the evaluation reaches it (filter and test names,
    keywords and keyword arguments count too: a name more is only one more to compare), and any
    use of ``reads`` or ``values`` other than ``.field`` or ``['field']`` is all of them. An
    expression that does not compile may get any answer: it is never evaluated to a value.
    Decision (issue 17, tenth session): from tokens, not Jinja's parser or lexer (~0.3 ms an
    expression, ~5 ms for the live itinerary's values on every start)."""
    if not deterministic_source(source, expression=True):
        return None
    tokens = [(m.lastgroup, m.group()) for m in _TOKENS.finditer(source) if m.lastgroup != "ws"]
    names: set[str] = set()
    fields: dict[str, set[str] | None] = {"reads": set(), "values": set()}
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        before = tokens[i - 1] if i > 0 else ("", "")
        i += 1
        # not a variable: an attribute (``x.name``), a filter (``| name``), a test (``is name``,
        # ``is not name``) or a keyword
        if kind != "name" or before in _NOT_VARIABLE_AFTER or text in _NOT_FIELDS or \
                (before == ("name", "not") and i > 2 and tokens[i - 3] == ("name", "is")):
            continue
        if text not in _SPLIT:
            names.add(text)
            continue
        following = tokens[i:i + 3]
        named = fields[text]
        if len(following) >= 2 and following[0] == ("op", ".") and following[1][0] == "name":
            field = following[1][1]
            i += 2
        elif len(following) == 3 and following[0] == ("op", "[") and following[2] == ("op", "]") \
                and following[1][0] == "str" and _QUOTED_NAME.fullmatch(following[1][1]):
            field = following[1][1][1:-1]
            i += 3
        else:
            fields[text] = None
            continue
        if named is not None:
            named.add(field)
    if names & _context_readers(_expression_env()):
        return None
    reads, values = fields["reads"], fields["values"]
    return Uses(frozenset(names), None if reads is None else frozenset(reads),
                None if values is None else frozenset(values))


def _pure(tree: nodes.Template) -> bool:
    for node in tree.find_all((nodes.Name, nodes.Filter, nodes.Include,
                               nodes.Import, nodes.FromImport, nodes.Extends)):
        if isinstance(node, nodes.Name):
            if node.name in _IMPURE_NAMES:
                return False
        elif isinstance(node, nodes.Filter):
            if node.name in _IMPURE_FILTERS:
                return False
        else:
            return False
    return True


def referenced_templates(env: ImmutableSandboxedEnvironment, name: str) -> tuple[str, ...]:
    """The templates ``name`` includes, imports or extends by a literal name (not ``ignore
    missing``), as found when ``env`` loaded it; call after ``env.get_template(name)``."""
    loader = env.loader
    if isinstance(loader, TemplateLoader) and name in loader.references:
        return loader.references[name]
    assert loader is not None
    return literal_references(env.parse(loader.get_source(env, name)[0], name))


@lru_cache(maxsize=32)
def _template_env(template_dir: str | None) -> _Environment:
    return _new_environment([template_dir] if template_dir else [], expressions=False)


@lru_cache(maxsize=1)
def _expression_env() -> _Environment:
    return _new_environment((), expressions=True)


@lru_cache(maxsize=4096)
def _compiled(expr: str) -> Any:
    env = _expression_env()
    return env.through_cache("expression", expr,
                             lambda: env.compile_expression(expr, undefined_to_none=False),
                             lambda code: TemplateExpression(env.from_cached_code(code), False))


@lru_cache(maxsize=4096)
def _compiled_string(source: str) -> Any:
    env = _template_env(None)
    return env.through_cache("string", source, lambda: env.from_string(source),
                             env.from_cached_code)


def compile_expression(expr: str, *, where: str = "") -> None:
    """Raise :class:`TemplateError` unless ``expr`` is a valid expression (result cached)."""
    try:
        _compiled(expr)
    except TemplateSyntaxError as exc:
        raise _error(where, f"expression {expr!r} does not compile: {exc.message}") from None


def compile_template(source: str, *, where: str = "") -> None:
    """Raise :class:`TemplateError` unless ``source`` is a valid template string."""
    try:
        _compiled_string(source)
    except TemplateSyntaxError as exc:
        raise _error(where, f"template {source!r} does not compile: {exc.message}") from None


def evaluate(expr: str, ctx: Mapping[str, Any], *, where: str = "", defined: bool = False) -> Any:
    """Evaluate the expression ``expr`` over ``ctx``; an undefined result is ``None``, or with
    ``defined`` a :class:`TemplateError` naming the missing field (:func:`describe_undefined`).

    ``where`` (like ``live.yaml:57: spec.states[3].readiness.ready``) prefixes error messages.
    """
    started = budget.begin()
    try:
        result = _compiled(expr)(**ctx)
    except _EVALUATION_ERRORS as exc:
        raise _failure(exc, where, "expression", expr, undefined="") from None
    finally:
        budget.end(started)
    if defined and isinstance(result, Undefined):
        raise _error(where, f"{expr!r} is undefined: {describe_undefined(result)}")
    return _deep_plain(result)


def describe_undefined(value: Undefined) -> str:
    """What is missing behind an undefined value, e.g. ``the object has no field 'volumez' (did
    you mean 'volumes'?)``: a missing field chains (``a.b.c`` stays the first miss), so this is
    the first name that was not there, and the suggestion comes from the keys the object has."""
    import difflib

    obj, name = value._undefined_obj, value._undefined_name
    if name is None or obj is missing:
        return value._undefined_message
    if obj is None:
        return f"no field {name!r} in none (an absent optional read, or a field that is null)"
    if isinstance(obj, Mapping):
        keys = sorted(str(k) for k in obj)
        close = difflib.get_close_matches(str(name), keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else \
            (f" (it has: {', '.join(keys)})" if keys and len(keys) <= 12 else
             " (it is empty)" if not keys else "")
        return f"the object has no field {name!r}{hint}"
    if isinstance(obj, (list, tuple)):
        return (f"index {name} is out of range of a list of {len(obj)}" if isinstance(name, int)
                else f"a list has no field {name!r} (index it, or loop over it)")
    return f"a {type(obj).__name__} has no field {name!r}"


# What evaluating or rendering user text can raise; anything else is a bug in smrun.
# RecursionError and MemoryError: a template that recursed or allocated past what the budget
# could see coming (a macro calling itself) is the template's fault, not a crash.
_EVALUATION_ERRORS = (JinjaError, ArithmeticError, TypeError, ValueError, LookupError,
                      RecursionError, MemoryError)


def _budget_message(exc: BaseException) -> str | None:
    if isinstance(exc, budget.BudgetExceeded):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "render budget exceeded: recursion too deep (a macro or loop calling itself)"
    if isinstance(exc, MemoryError):
        return "render budget exceeded: out of memory"
    return None


def _failure(exc: Exception, where: str, what: str, text: str, *, undefined: str) -> TemplateError:
    """One clear error for an expression or a template string that failed."""
    over = _budget_message(exc)
    if over is not None:
        return RenderBudgetExceeded(f"{where}: {text!r}: {over}" if where else f"{text!r}: {over}")
    if isinstance(exc, TemplateSyntaxError):
        return _error(where, f"{what} {text!r} does not compile: {exc.message}")
    if isinstance(exc, SecurityError):
        return _error(where, f"sandbox violation in {text!r}: {exc}")
    if isinstance(exc, UndefinedError):
        return _error(where, f"{text!r}: {undefined}{exc.message}")
    return _error(where, f"{text!r} failed: {type(exc).__name__}: {exc}")


def _deep_plain(value: Any) -> Any:
    if isinstance(value, Undefined):
        return None
    if isinstance(value, list):
        return [_deep_plain(v) for v in value]
    if isinstance(value, tuple):
        return [_deep_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _deep_plain(v) for k, v in value.items()}
    return value


def render_text(template_name: str, ctx: Mapping[str, Any], *,
                template_dir: Path | str | None = None) -> str:
    """Render the template file ``template_name`` (searched in ``template_dir``, then the
    built-in templates) with ``ctx``. Errors name the template file and line."""
    env = template_environment(template_dir)
    try:
        template = env.get_template(template_name)
    except TemplateNotFound as exc:
        searched = ", ".join(getattr(env.loader, "searchpath", []))
        raise _error("", f"template {exc.name or template_name!r} not found "
                         f"(searched {searched})") from None
    except TemplateSyntaxError as exc:
        where = f"{exc.filename or template_name}:{exc.lineno}"
        raise _error(where, f"syntax error: {exc.message}") from None
    started = budget.begin()
    try:
        return _render_bounded(template, ctx)
    except (budget.BudgetExceeded, RecursionError, MemoryError) as exc:
        raise RenderBudgetExceeded(f"{_where(exc, template.filename or template_name)}: "
                                   f"{_budget_message(exc)}") from None
    except TemplateNotFound as exc:
        raise _error(_where(exc, template.filename or template_name),
                     f"template {exc.name!r} not found") from None
    except TemplateSyntaxError as exc:
        raise _error(f"{exc.filename or exc.name}:{exc.lineno}",
                     f"syntax error: {exc.message}") from None
    except SecurityError as exc:
        raise _error(_where(exc, template.filename or template_name),
                     f"sandbox violation: {exc}") from None
    except UndefinedError as exc:
        raise _error(_where(exc, template.filename or template_name),
                     f"undefined: {exc.message}") from None
    except (JinjaError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise _error(_where(exc, template.filename or template_name),
                     f"{type(exc).__name__}: {exc}") from None
    finally:
        budget.end(started)


def _render_bounded(template: Any, ctx: Mapping[str, Any]) -> str:
    """``template.render(ctx)``, stopped once the text passes ``budget.OUTPUT_CHARS`` (what
    ``Template.render`` does, counting the chunks in blocks of 16: a loop in C, not a Python
    step per chunk; one chunk is at most ``budget.VALUE_CHARS`` unless it comes from the
    context, so the overshoot is bounded)."""
    parts: list[str] = []
    total = 0
    try:
        chunks = template.root_render_func(template.new_context(dict(ctx)))
        while True:
            block = list(islice(chunks, 16))
            if not block:
                break
            total += sum(map(len, block))
            if total > budget.OUTPUT_CHARS:
                raise budget.too_big("the rendered text", total, budget.OUTPUT_CHARS)
            parts += block
    except Exception:
        template.environment.handle_exception()  # re-raises with the template's own lines
    return "".join(parts)


# A template string that is one field path and nothing else (``{{ vm.name }}``, ``{{ item }}``):
# the names of most object references. Jinja's literals and operators are not field names.
_FIELD_PATH = re.compile(r"\{\{ *([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*) *\}\}")
_NOT_FIELDS = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not",
                         "in", "is", "if", "else"})
_ABSENT = object()


@lru_cache(maxsize=4096)
def _field_path(source: str) -> tuple[str, ...] | None:
    match = _FIELD_PATH.fullmatch(source)
    if match is None:
        return None
    path = tuple(match.group(1).split("."))
    return None if any(part in _NOT_FIELDS for part in path) else path


def _plain_string(source: str, ctx: Mapping[str, Any]) -> str | None:
    """What ``source`` renders to, when that is plain to see; else ``None`` (Jinja renders it).
    Decision (issue 17, tenth session): every object reference's name and namespace went
    through Jinja (a new context, the compiled template, the budget), ~80 times per VM in
    preflight and again on the engine's loop. Two forms are answered here, with Jinja's answer:
    a text with no ``{`` and no carriage return (no tag, nothing for Jinja to normalise: it
    renders as written, trailing newline kept), and one field path whose every step is an item
    of a plain dict (what the environment's ``getattr`` gives there) ending at a string (what
    ``{{ }}`` prints as it is). Anything else, a missing field (Jinja's error), another type, a
    dict subclass (``values`` while reads resolve), goes to Jinja."""
    if len(source) > budget.OUTPUT_CHARS:
        return None
    if "{" not in source:
        return source if "\r" not in source else None
    path = _field_path(source)
    if path is None:
        return None
    value = ctx.get(path[0], _ABSENT)
    for part in path[1:]:
        if type(value) is not dict or part in _DICT_NAMES:
            return None
        value = value.get(part, _ABSENT)
    return value if type(value) is str and len(value) <= budget.OUTPUT_CHARS else None


def render_string(source: str, ctx: Mapping[str, Any], *, where: str = "") -> str:
    """Render one template string (a REF field, a message) with strict undefined."""
    plain = _plain_string(source, ctx)
    if plain is not None:
        return plain
    started = budget.begin()
    try:
        return _render_bounded(_compiled_string(source), ctx)
    except _EVALUATION_ERRORS as exc:
        raise _failure(exc, where, "template", source, undefined="undefined: ") from None
    finally:
        budget.end(started)


def render_value(value: Any, ctx: Mapping[str, Any], *, where: str = "") -> Any:
    """Render every string inside a YAML value (mappings, lists) as a template; keys stay."""
    if isinstance(value, str):
        return render_string(value, ctx, where=where) if ("{" in value) else value
    if isinstance(value, Mapping):
        return {k: render_value(v, ctx, where=where) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, ctx, where=where) for v in value]
    return value


def _where(exc: BaseException, filename: str) -> str:
    """``file:line`` of the innermost template frame in ``exc``'s traceback."""
    line: int | None = None
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{filename}:{line}" if line else filename


def _error(where: str, message: str) -> TemplateError:
    return TemplateError(f"{where}: {message}" if where else message)
