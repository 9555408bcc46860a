"""Request-body decoding for the simulated API server, with kube-apiserver's error answers.

``decode_object`` turns a create/update body (JSON, YAML or Kubernetes protobuf, by
``Content-Type``) into a dict; ``decode_patch`` does the same for a patch body. Decoding errors are
400 ``BadRequest`` with upstream's wording: a create/update body that does not parse gets
``the object provided is unrecognized (must be of type <Kind>): couldn't get version/kind; json
parse error: <Go's scanner message> (<first 30 bytes> ...)`` (apiserver ``transformDecodeError``
around apimachinery's ``SimpleMetaFactory.Interpret``); a patch gets ``error decoding patch:
<message>``. Go's scanner messages are reproduced for the common syntax errors, and nesting past
Go's ``maxNestingDepth`` (10000) gives ``invalid character '{' exceeded max depth``.

Python's own parsers recurse, so a body nested deeper than the interpreter's recursion limit
allows (a few hundred levels) but within 10000 is refused here too, with the same message
shape: a real server would accept it (docs/simulator.md lists this).

It does not read bodies off the wire (``wire.py``) nor validate decoded objects.
"""
from __future__ import annotations

import json
import re
from typing import Any

import yaml

from statemachine.errors import PermanentClusterError
from statemachine.sim import protobuf
from statemachine.sim.kinds import Kind

#: encoding/json's maxNestingDepth (also the limit of sigs.k8s.io/json).
MAX_DEPTH = 10_000
PROTOBUF = "application/vnd.kubernetes.protobuf"
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')


def bad_request(message: str) -> PermanentClusterError:
    return PermanentClusterError(message, status=400, reason="BadRequest")


def unsupported_media_type() -> PermanentClusterError:
    return PermanentClusterError("the body of the request was in an unknown format - accepted "
                                 "media types include: application/json, application/yaml",
                                 status=415, reason="UnsupportedMediaType")


def _quote_char(c: str) -> str:
    """Go's ``quoteChar``: how its JSON scanner names an offending character."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    return "'" + json.dumps(c)[1:-1] + "'" if c.isprintable() else repr(c)


def _too_deep(raw: bytes) -> str | None:
    """The bracket that takes ``raw`` past ``MAX_DEPTH``, or ``None`` if it stays within it."""
    depth = 0
    for m in re.finditer(rb"[\[\]{}]", _STRINGS.sub(b'""', raw)):
        if m.group() in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return m.group().decode()
        else:
            depth -= 1
    return None


def _go_syntax_error(exc: json.JSONDecodeError) -> str:
    """Go's encoding/json message for the error Python's parser found."""
    doc, pos = exc.doc, exc.pos
    if pos >= len(doc.rstrip()) or exc.msg.startswith("Unterminated"):
        return "unexpected end of JSON input"
    c = _quote_char(doc[pos])
    context = {"Expecting value": "looking for beginning of value",
               "Expecting property name enclosed in double quotes":
                   "looking for beginning of object key string",
               "Expecting ':' delimiter": "after object key",
               "Extra data": "after top-level value"}.get(exc.msg)
    if context is None and exc.msg == "Expecting ',' delimiter":
        before = doc[:pos].rstrip()
        context = ("after object key:value pair" if doc.rfind("{", 0, pos) >
                   doc.rfind("[", 0, pos) else "after array element") if before else None
    return f"invalid character {c} {context}" if context else exc.msg


def go_json_error(exc: json.JSONDecodeError) -> str:
    """Go's encoding/json message for a syntax error Python's parser found (for checks that
    parse JSON held in a field, such as a docker config Secret's)."""
    return _go_syntax_error(exc)


def _parse_json(raw: bytes) -> Any:
    """``json.loads`` with Go's messages in a ``ValueError``."""
    try:
        return json.loads(raw)
    except RecursionError:
        bracket = _too_deep(raw) or ("{" if raw.lstrip()[:1] == b"{" else "[")
        raise ValueError(f"invalid character {_quote_char(bracket)} exceeded max depth") from None
    except json.JSONDecodeError as exc:
        raise ValueError(_go_syntax_error(exc)) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 in request body: {exc.reason}") from None


def _summary(raw: bytes) -> str:
    """apiserver's ``summarizeData(body, 30)``."""
    if not raw:
        return "<empty>"
    if raw[:1] == b"{":
        text = raw[:30].decode("utf-8", "replace")
        return text + " ..." if len(raw) > 30 else text
    return raw[:30].hex() + (" ..." if len(raw) > 30 else "")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def decode_object(raw: bytes, content_type: str | None, kind: Kind) -> Any:
    """The object a create or update body carries (``None`` for an empty body)."""
    media = media_type(content_type)
    if media == PROTOBUF:
        try:
            return protobuf.decode_object(raw, kind)
        except protobuf.Unsupported:
            raise unsupported_media_type() from None
        except protobuf.DecodeError as exc:
            raise bad_request(f"the object provided is unrecognized (must be of type "
                              f"{kind.kind}): {exc} ({_summary(raw)})") from None
    if not raw.strip():
        return None
    if media in ("application/yaml", "application/apply-patch+yaml"):
        return _parse_yaml(raw, "error decoding YAML")
    try:
        return _parse_json(raw)
    except ValueError as exc:
        raise bad_request(f"the object provided is unrecognized (must be of type {kind.kind}): "
                          f"couldn't get version/kind; json parse error: {exc} "
                          f"({_summary(raw)})") from None


def decode_patch(raw: bytes, *, yaml_ok: bool) -> Any:
    """The patch document of a PATCH body (``None`` for an empty body)."""
    if not raw.strip():
        return None
    if yaml_ok:
        return _parse_yaml(raw, "error decoding YAML")
    try:
        return _parse_json(raw)
    except ValueError as exc:
        raise bad_request(f"error decoding patch: {exc}") from None


def decode_options(raw: bytes) -> Any:
    """A DeleteOptions body (JSON); ``None`` when empty."""
    if not raw.strip():
        return None
    try:
        return _parse_json(raw)
    except ValueError as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


def _parse_yaml(raw: bytes, prefix: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except RecursionError:
        raise bad_request(f"{prefix}: exceeded max depth") from None
    except yaml.YAMLError as exc:
        raise bad_request(f"{prefix}: {' '.join(str(exc).split())}") from None
