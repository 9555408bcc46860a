"""The render budget: what one template render or one expression evaluation may cost.

Templates and expressions come from itinerary authors, and the Jinja2 sandbox stops what they may
*touch*, not what they may *cost*: ``range`` nested in loops, string or list multiplication,
``**``, a recursive macro, a join of a huge list, a format width of a billion can exhaust CPU or
memory. Limits (documented in README.md and docs/itinerary.md):

- ``SECONDS`` (2 s) of wall-clock time per render or evaluation, so that an answer comes
  within seconds however busy the machine is (a normal template renders in milliseconds; a
  thread's CPU clock was tried first and let a runaway loop run three times as long on a loaded
  machine). Checked every ``CHECK_EVERY`` steps, where a step is one loop iteration (every
  ``{% for %}`` iterable is wrapped by the environment, see ``expressions._Environment``) or one
  call (a function, macro or method);
- ``OUTPUT_CHARS`` (2 Mi characters): the text one template file renders;
- ``VALUE_CHARS`` (1 Mi characters or items): any one value made by ``*``, ``+``, ``%``,
  ``**`` (in bits), ``join``, a format width, or kept in a ``namespace``.

Exceeding one raises :class:`BudgetExceeded` (a ``SecurityError``), which the callers turn into a
``TemplateError`` naming the template (and the VM, see render.py): exit 2. A budget is per thread
and starts with the outermost render or evaluation (:func:`begin`/:func:`end`); a normal
template pays a counter increment per step and one clock read per ``CHECK_EVERY`` steps.
This module holds the accounting only; the environment wires it in (expressions.py).
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jinja2 import pass_environment, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.utils import Namespace

SECONDS = 2.0
OUTPUT_CHARS = 2 * 1024 * 1024
VALUE_CHARS = 1024 * 1024
CHECK_EVERY = 64
_MAX_POWER_BITS = 64 * 1024  # a ** b: at most this many bits in the result


class BudgetExceeded(SecurityError):
    """A template or expression went over its render budget."""


class _State(threading.local):
    active = False
    steps = 0
    next_check = CHECK_EVERY
    deadline: float | None = None


_state = _State()


def begin() -> bool:
    """Start a budget on this thread unless one is running; True when this call started it (pass
    it to :func:`end`). The clock is read at the first check, not here (most expressions never
    reach one), so the budget counts from then: at most ``CHECK_EVERY`` steps late."""
    st = _state
    if st.active:
        return False
    st.active, st.steps, st.next_check, st.deadline = True, 0, CHECK_EVERY, None
    return True


def end(started: bool) -> None:
    if started:
        _state.active = False


def charge() -> None:
    """One step (a loop iteration or a call); every ``CHECK_EVERY`` steps, the time."""
    st = _state
    st.steps += 1
    if st.steps < st.next_check:
        return
    st.next_check += CHECK_EVERY
    now = time.monotonic()
    if st.deadline is None:
        st.deadline = now + SECONDS
    elif now > st.deadline:
        raise BudgetExceeded(f"render budget exceeded: more than {SECONDS:g} s "
                             f"({st.steps} loop iterations and calls)")


def iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every ``{% for %}`` iterable goes through this: one step per item."""
    for item in iterable:
        charge()
        yield item


def too_big(what: str, size: int, limit: int = VALUE_CHARS) -> BudgetExceeded:
    return BudgetExceeded(f"render budget exceeded: {what} would be {size} long "
                          f"(at most {limit})")


def size_of(value: Any, limit: int = VALUE_CHARS) -> int:
    """Characters or items ``value`` stands for, counting shared parts each time they occur (as
    printing it would), stopping early once past ``limit``."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, (list, tuple)):
            total += 1
            stack.extend(item)
        elif isinstance(item, Mapping):
            total += 1
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += 1
        if total > limit:
            return total
    return total


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` when its result would be over ``VALUE_CHARS``."""
    if operator == "*":
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(times, int) and isinstance(seq, (str, bytes, list, tuple)) and times > 1:
            if size_of(seq) * times > VALUE_CHARS:
                raise too_big("a repeated sequence", size_of(seq) * times)
    elif operator == "+":
        if isinstance(left, (str, bytes, list, tuple)) and isinstance(right, (str, bytes, list, tuple)):
            size = size_of(left) + size_of(right)
            if size > VALUE_CHARS:
                raise too_big("a concatenation", size)
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            bits = abs(left).bit_length() * right
            if bits > _MAX_POWER_BITS:
                raise too_big("a power (in bits)", bits, _MAX_POWER_BITS)
    elif operator == "%" and isinstance(left, str):
        check_format_widths(left)
        if "*" in left:  # '%*d' % (1000000000, 1): the width comes from the arguments
            for arg in right if isinstance(right, tuple) else (right,):
                if isinstance(arg, int) and arg > VALUE_CHARS:
                    raise too_big("a format width", arg)


_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(\d*)(?:\.(\d+))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_DIGITS = re.compile(r"\d+")


def check_format_widths(text: str, braces: bool = False) -> None:
    """Refuse a ``%`` (or, with ``braces``, ``str.format``) width or precision over
    ``VALUE_CHARS`` (``'%1000000000d'``, ``'{:>1000000000}'``)."""
    if braces:
        numbers = [n for spec in _FORMAT_SPEC.findall(text) for n in _DIGITS.findall(spec)]
    else:
        numbers = [n for pair in _PERCENT_WIDTH.findall(text) for n in pair if n]
    for number in numbers:
        if len(number) > 6 and int(number) > VALUE_CHARS:
            raise too_big("a format width", int(number))


# str methods whose result grows with an int argument (``'x'.ljust(10**9)``).
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format",
                            "format_map"})


def check_call(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Before a call from a template: one step, and a str method that would build a string over
    ``VALUE_CHARS`` (a huge width, ``replace`` or ``join``) is refused."""
    charge()
    obj = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format to format safely
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(obj, "__name__", "")
    if name in _WIDTH_METHODS:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and arg > VALUE_CHARS:
                raise too_big(f"str.{name}()", arg)
        if name in ("format", "format_map"):
            check_format_widths(owner, braces=True)
    elif name == "replace" and len(args) >= 2 and isinstance(args[1], str):
        old, new = args[0], args[1]
        hits = owner.count(old) if old else len(owner) + 1
        if len(owner) + hits * len(new) > VALUE_CHARS:
            raise too_big("str.replace()", len(owner) + hits * len(new))
    elif name == "join" and len(args) == 1:
        join_size(owner, args[0])


def join_size(separator: str, items: Any) -> list[str]:
    """``items`` as strings, refused once joining them with ``separator`` would pass
    ``VALUE_CHARS`` (checked item by item, before the joined string exists)."""
    out: list[str] = []
    total = 0
    for item in items:
        charge()
        text = item if isinstance(item, str) else str(check_value("an item to join", item))
        total += len(text) + len(separator)
        if total > VALUE_CHARS:
            raise too_big("a join", total)
        out.append(text)
    return out


def check_value(what: str, value: Any) -> Any:
    """``value`` unchanged, unless it is over ``VALUE_CHARS``."""
    size = size_of(value)
    if size > VALUE_CHARS:
        raise too_big(what, size)
    return value


# -- filters and globals with a budget ------------------------------------------------------------

@pass_environment
def _join(env: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    if attribute is not None:
        value = map(make_attrgetter(env, attribute), value)
    return str(d).join(join_size(str(d), value))


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    pad = width if isinstance(width, int) else len(str(width))
    size = len(str(s)) + (str(s).count("\n") + 1) * max(pad, 0)
    if size > VALUE_CHARS:
        raise too_big("an indented text", size)
    return _FILTERS["indent"](s, width, first, blank)  # type: ignore[no-any-return]


def _center(value: str, width: int = 80) -> str:
    if isinstance(width, int) and width > VALUE_CHARS:
        raise too_big("a centered text", width)
    return _FILTERS["center"](value, width)  # type: ignore[no-any-return]


@pass_eval_context
def _replace(ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    text, old_s, new_s = str(s), str(old), str(new)
    hits = (text.count(old_s) if old_s else len(text) + 1) if count is None else min(count, len(text) + 1)
    if len(text) + hits * len(new_s) > VALUE_CHARS:
        raise too_big("a replacement", len(text) + hits * len(new_s))
    return _FILTERS["replace"](ctx, s, old, new, count)  # type: ignore[no-any-return]


@pass_eval_context
def _slice(ctx: Any, value: Any, slices: int, fill_with: Any = None) -> Any:
    if isinstance(slices, int) and slices > VALUE_CHARS:
        raise too_big("a slice count", slices)
    return _FILTERS["slice"](ctx, value, slices, fill_with)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    check_binop("%", str(value), args)
    return _FILTERS["format"](value, *args, **kwargs)  # type: ignore[no-any-return]


class BudgetNamespace(Namespace):
    """``namespace()``: a value kept across loop iterations is held to ``VALUE_CHARS``."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, check_value(f"namespace value {name!r}", value))


_FILTERS: dict[str, Any] = {}
LOOP_FILTER = "smrun_loop_budget"


def install(env: Any) -> None:
    """Put the budget into a sandboxed environment's filters and globals (``lipsum``, which
    makes text of any size, is removed; ``range`` is the sandbox's, at most 100,000 items)."""
    from jinja2 import filters

    if not _FILTERS:
        _FILTERS.update(indent=filters.do_indent, center=filters.do_center,
                        replace=filters.do_replace, slice=filters.do_slice,
                        format=filters.do_format)
    env.filters.update(join=_join, indent=_indent, center=_center, replace=_replace,
                       slice=_slice, format=_format)
    env.filters[LOOP_FILTER] = iterate
    env.globals.pop("lipsum", None)
    env.globals["namespace"] = BudgetNamespace
