"""Schema admission of custom resources written through the API: pruning, defaulting, validation.

The store calls :func:`admit` (its ``admission`` hook) with the next version of an object just
before it commits a create or an update. Only writes made inside :func:`request` (the API server
wraps every request in it) are admitted: the simulated controllers write straight to the store,
as KubeVirt's controllers own their status, and are not slowed down by it.

For a kind with a structural schema (``Kind.schema`` from a CRD, else the shipped upstream data,
see ``schemas.py``), as kube-apiserver's custom resource handler does:

- undeclared fields are pruned. With ``fieldValidation=Strict`` (kubectl's default) they are a
  400 ``BadRequest``, ``<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding
  error: unknown field "spec.x"``; with ``Warn`` (the API default) each becomes a ``Warning: 299``
  header; with ``Ignore`` they are dropped silently;
- ``default`` values are filled in;
- the object is validated: 422 ``Invalid`` with one cause per field error.

A main-resource write of a kind with a status subresource ignores ``status`` (the store keeps the
old one); a ``/status`` write is checked against the status schema only. An update does not walk
the top-level fields it leaves unchanged (upstream ratchets unchanged fields too; here it keeps a
metadata-only patch as cheap as before).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from statemachine.errors import Invalid, PermanentClusterError
from statemachine.sim import schemas, strictdecode
from statemachine.sim.kinds import Kind
from statemachine.sim.structural import FieldError, StructuralSchema

if TYPE_CHECKING:
    from statemachine.sim.auth import Identity

MODES = ("Strict", "Warn", "Ignore")
_local = threading.local()
_builtin: dict[tuple[str, str], StructuralSchema | None] = {}
_builtin_lock = threading.Lock()


class _Request:
    __slots__ = ("mode", "warnings", "who", "name")

    def __init__(self, mode: str, who: Identity | None, name: str) -> None:
        self.mode = mode
        self.warnings: list[str] = []
        self.who = who
        self.name = name


@contextmanager
def request(field_validation: str | None, who: Identity | None = None,
            name: str = "") -> Iterator[_Request]:
    """Admit the store writes made by this thread until the block ends. ``field_validation`` is
    the request's ``fieldValidation`` query value (empty: ``Warn``); an unknown value is a 400.
    ``who`` and ``name`` (the name on the URL, "" for a create by POST) are for admission that
    depends on the requester (:func:`requester`)."""
    mode = field_validation or "Warn"
    if mode not in MODES:
        raise PermanentClusterError(
            f'fieldValidation parameter unsupported: "{field_validation}"', status=400,
            reason="BadRequest")
    ctx = _Request(mode, who, name)
    _local.ctx = ctx
    try:
        yield ctx
    finally:
        _local.ctx = None


def warn(text: str) -> None:
    """Add a ``Warning`` header to this thread's current request (if any)."""
    ctx: _Request | None = getattr(_local, "ctx", None)
    if ctx is not None:
        ctx.warnings.append(text)


def in_request() -> bool:
    """Whether this thread is serving an API request (its store writes are admitted)."""
    return getattr(_local, "ctx", None) is not None


def requester() -> tuple[Identity, str] | None:
    """Who this thread's current request is from and the name on its URL ("" for a create by
    POST), as upstream's request context carries them; ``None`` outside a request or when the
    server did not say (``escalation.py`` uses it)."""
    ctx: _Request | None = getattr(_local, "ctx", None)
    if ctx is None or ctx.who is None:
        return None
    return ctx.who, ctx.name


def warnings() -> list[str]:
    """The warnings of this thread's current request (``Warning`` header texts)."""
    ctx: _Request | None = getattr(_local, "ctx", None)
    return ctx.warnings if ctx is not None else []


def schema_of(kind: Kind) -> StructuralSchema | None:
    """The kind's schema: its CRD's, else the shipped upstream one; ``None`` for built-in
    Kubernetes kinds and custom kinds upstream does not describe."""
    if kind.schema is not None:
        return kind.schema
    if not kind.custom:
        return None
    key = (kind.api_version, kind.kind)
    if key not in _builtin:
        with _builtin_lock:
            raw = schemas.kind_schema(*key)
            _builtin[key] = StructuralSchema(raw) if raw is not None else None
    return _builtin[key]


def admit(kind: Kind, new: dict[str, Any], old: dict[str, Any] | None,
          subresource: str | None) -> None:
    """The store's hook: prune, default and validate ``new`` in place (see the module doc)."""
    ctx: _Request | None = getattr(_local, "ctx", None)
    if ctx is None:
        return
    if kind.kind == "CustomResourceDefinition" and kind.group == "apiextensions.k8s.io":
        from statemachine.sim import crd  # crd.py builds on this module
        crd.admit_crd(kind, new, old, subresource)
        return
    schema = schema_of(kind)
    if schema is None:
        if not kind.custom:
            _strict_builtin(ctx, kind, new, old, subresource)
        return
    if subresource == "status":
        node = schema.node("status")
        unknown: list[str] = []
        errors: list[FieldError] = []
        if node is not None and "status" in new:
            node.prune(new["status"], "status", unknown)
            node.default(new["status"])
            node.validate(new["status"], "status", errors)
    else:
        skip: tuple[str, ...] = ("status",) if kind.status_subresource else ()
        if old is not None:
            # Top-level fields an update leaves as they were are not walked again: what is
            # stored was admitted when written, and upstream ratchets unchanged fields too.
            skip += tuple(key for key, value in new.items()
                          if key not in ("metadata", "apiVersion", "kind") and key in old
                          and old[key] == value)
        unknown = schema.prune(new, skip=skip)
        schema.default(new, skip=skip)
        errors = []  # validated after the unknown-field check, as decoding comes first
    _unknown_fields(ctx, kind, unknown)
    if subresource != "status":
        errors = schema.validate(new, skip=skip)
    if errors:
        raise invalid(kind, (new.get("metadata") or {}).get("name", ""), errors)


def _unknown_fields(ctx: _Request, kind: Kind, unknown: list[str]) -> None:
    """What ``fieldValidation`` makes of the pruned fields: 400 (Strict), warnings (Warn)."""
    if not unknown:
        return
    if ctx.mode == "Strict":
        fields = ", ".join(f'unknown field "{path}"' for path in unknown)
        raise PermanentClusterError(
            f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
            f"strict decoding error: {fields}", status=400, reason="BadRequest")
    if ctx.mode == "Warn":
        ctx.warnings.extend(f'unknown field "{path}"' for path in unknown)


def decode_builtin(kind: Kind, body: dict[str, Any]) -> None:
    """Go's strict decoding of a create or replace body of a built-in kind, before anything
    else looks at it (so an unknown field is the 400 even when the metadata is invalid too):
    the whole body, ``status`` included. Patches are decoded in :func:`admit` instead."""
    ctx: _Request | None = getattr(_local, "ctx", None)
    if ctx is None or kind.custom:
        return
    _unknown_fields(ctx, kind, strictdecode.prune_object(kind.group, kind.kind, body))


def _strict_builtin(ctx: _Request, kind: Kind, new: dict[str, Any],
                    old: dict[str, Any] | None, subresource: str | None) -> None:
    """Go's strict decoding of a built-in kind (``strictdecode.py``): unknown fields are
    dropped, and refused or warned about per ``fieldValidation``. A main-resource write leaves
    ``status`` alone when the kind has a status subresource (the stored one is kept); an update
    does not look again at top-level fields it leaves as they were."""
    if subresource == "status":
        skip = tuple(key for key in new if key != "status")
    else:
        skip = ("status",) if kind.status_subresource else ()
        if old is not None:
            skip += tuple(key for key, value in new.items()
                          if key not in ("apiVersion", "kind") and key in old
                          and old[key] == value)
    _unknown_fields(ctx, kind, strictdecode.prune_object(kind.group, kind.kind, new, skip=skip))


def invalid(kind: Kind, name: str, errors: list[FieldError]) -> Invalid:
    """A 422 ``Invalid`` as upstream builds it: Kind.group in the message, one cause per error,
    several errors aggregated in brackets."""
    group = f".{kind.group}" if kind.group else ""
    parts = list(dict.fromkeys(f"{field}: {message}" for _, field, message in errors))
    aggregate = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    exc = Invalid(f'{kind.kind}{group} "{name}" is invalid: {aggregate}', status=422,
                  reason="Invalid")
    exc.status_details = {  # type: ignore[attr-defined]
        "name": name, "group": kind.group, "kind": kind.kind,
        "causes": [{"reason": reason, "message": message, "field": field}
                   for reason, field, message in errors]}
    return exc


def problems(kind: Kind, obj: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, message)`` pairs for ``obj`` checked strictly (unknown fields are problems too),
    ``status`` left out; ``[]`` when valid or when the kind has no schema. Does not change
    ``obj``. For checking rendered manifests without a server."""
    schema = schema_of(kind)
    if schema is None:
        return []
    body = json.loads(json.dumps(obj))
    unknown = schema.prune(body, skip=("status",))
    found = [(path, "unknown field") for path in unknown]
    found += [(field, message) for _, field, message in schema.validate(body, skip=("status",))]
    return found
