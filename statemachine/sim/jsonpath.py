"""The JSONPath dialect of CRD ``additionalPrinterColumns``, evaluated as kube-apiserver does.

A column's ``jsonPath`` is a kubectl-style path without braces: ``.status.phase``,
``.status.interfaces[0].ipAddress``, ``.status.conditions[?(@.type=='Ready')].status``,
``.metadata.labels['app.kubernetes.io/name']``, ``.items[*].name``. Missing keys are allowed (no
match, not an error), as the apiextensions table convertor evaluates them.

:func:`compile_path` parses once (kinds cache their compiled columns); :func:`find` returns every
match in document order. :func:`go_text` prints a value the way Go's ``fmt`` prints it, which is
what a ``string`` column shows for a non-string value.

Not supported (CRDs in this simulator do not use them): ranges ``[a:b:c]``, unions ``[a,b]``,
recursive descent ``..``, functions, and ``&&``/``||`` in filters.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Union

_FIELD = re.compile(r"\.([A-Za-z0-9_\-/$]+)")
_QUOTED = re.compile(r"\[\s*(['\"])(.*?)\1\s*\]")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_FILTER = re.compile(r"\[\s*\?\(\s*(.*?)\s*\)\s*\]")
_COMPARE = re.compile(r"^@((?:\.[A-Za-z0-9_\-/$]+)*)\s*(==|!=|<=|>=|<|>)\s*(.+)$")
_EXISTS = re.compile(r"^@((?:\.[A-Za-z0-9_\-/$]+)+)$")


@dataclass(frozen=True)
class _Field:
    name: str


@dataclass(frozen=True)
class _Index:
    index: int


@dataclass(frozen=True)
class _All:
    pass


@dataclass(frozen=True)
class _Filter:
    keys: tuple[str, ...]
    op: str  # "" = the key exists
    literal: Any = None


_Step = Union[_Field, _Index, _All, _Filter]


class JSONPathError(ValueError):
    """A path this dialect cannot parse."""


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise JSONPathError(f"unrecognized literal {text!r}") from None


def _parse_filter(expr: str) -> _Filter:
    match = _COMPARE.match(expr)
    if match:
        keys = tuple(k for k in match.group(1).split(".") if k)
        return _Filter(keys, match.group(2), _literal(match.group(3)))
    match = _EXISTS.match(expr)
    if match:
        return _Filter(tuple(k for k in match.group(1).split(".") if k), "")
    raise JSONPathError(f"unsupported filter {expr!r}")


@functools.lru_cache(maxsize=512)
def compile_path(path: str) -> tuple[_Step, ...]:
    """Parse ``path`` (with or without surrounding ``{}``); raises :class:`JSONPathError`."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    steps: list[_Step] = []
    pos = 0
    while pos < len(text):
        if text.startswith("[*]", pos) or text.startswith(".*", pos):
            steps.append(_All())
            pos += 3 if text[pos] == "[" else 2
            continue
        for pattern in (_FIELD, _QUOTED, _INDEX, _FILTER):
            match = pattern.match(text, pos)
            if match is None:
                continue
            if pattern is _FIELD:
                steps.append(_Field(match.group(1)))
            elif pattern is _QUOTED:
                steps.append(_Field(match.group(2)))
            elif pattern is _INDEX:
                steps.append(_Index(int(match.group(1))))
            else:
                steps.append(_parse_filter(match.group(1)))
            pos = match.end()
            break
        else:
            if text[pos] == "." and pos == len(text) - 1:  # "." alone: the whole object
                break
            raise JSONPathError(f"unexpected {text[pos:]!r} in {path!r}")
    return tuple(steps)


_MISSING = object()


def _walk(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b), "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b), ">": lambda a, b: bool(a > b),
    "<=": lambda a, b: bool(a <= b), ">=": lambda a, b: bool(a >= b),
}


def _matches(item: Any, flt: _Filter) -> bool:
    value = _walk(item, flt.keys)
    if value is _MISSING:
        return False
    if not flt.op:
        return True
    try:
        return _OPS[flt.op](value, flt.literal)
    except TypeError:  # e.g. "<" between a string and a number: no match, as upstream
        return False


def find(obj: Any, steps: tuple[_Step, ...]) -> list[Any]:
    """Every value ``steps`` reaches in ``obj`` (missing keys and indexes give no match)."""
    current = [obj]
    for step in steps:
        found: list[Any] = []
        for value in current:
            if isinstance(step, _Field):
                if isinstance(value, dict) and step.name in value:
                    found.append(value[step.name])
            elif isinstance(step, _Index):
                if isinstance(value, list) and -len(value) <= step.index < len(value):
                    found.append(value[step.index])
            elif isinstance(step, _All):
                if isinstance(value, list):
                    found.extend(value)
                elif isinstance(value, dict):
                    found.extend(value[k] for k in sorted(value))
            else:
                items = value if isinstance(value, list) else (
                    [value[k] for k in sorted(value)] if isinstance(value, dict) else [])
                found.extend(item for item in items if _matches(item, step))
        current = found
        if not current:
            break
    return current


def _go_float(value: float) -> str:
    """``fmt.Sprint(float64)`` (``%g`` with the shortest digits): exponent form below 1e-4 and
    from 1e6 up, as Go prints ``1e+06``."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(str(d) for d in digits)
    exp10 = len(mantissa) + exponent - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        head, tail = mantissa[0], mantissa[1:]
        return f"{prefix}{head}{'.' + tail if tail else ''}e{'-' if exp10 < 0 else '+'}" \
               f"{abs(exp10):02d}"
    text = format(Decimal(repr(abs(value))).normalize(), "f")
    return prefix + text


def go_text(value: Any) -> str:
    """``value`` printed as Go's ``fmt.Sprint`` prints the decoded JSON value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, list):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)
