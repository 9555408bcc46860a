"""Lists as kube-apiserver serves them: ListOptions checks, resourceVersion semantics, pagination.

- :func:`list_options` reads the query of a list or watch and refuses invalid combinations with the
  422 ``ListOptions.meta.k8s.io "" is invalid`` Status upstream sends (apiserver-fidelity.md §3.1).
- :func:`list_page` serves one list request (§3.2, §3.3):

  - no ``resourceVersion``: the current state; ``"0"``: the current state, ``limit`` ignored (as a
    watch cache serves it);
  - ``"N"`` with ``resourceVersionMatch=NotOlderThan`` (or without a match and without a limit):
    the current state once the store has reached N, else 504 after 3 s;
  - ``"N"`` with ``Exact`` (or, the legacy form, without a match but with a ``limit``): the state
    exactly at N, rebuilt from the event history; 410 once N is compacted;
  - ``limit``/``continue``: pages in etcd key order (``namespace/name``) of one snapshot. The token
    is upstream's (base64url of ``{"v":"meta.k8s.io/v1","rv":R,"start":KEY}``); every page is served
    as of the first page's R. A token whose R was compacted gets 410 with a fresh token (rv -1)
    that continues from the current state. ``remainingItemCount`` is set when no selector is used.

The objects returned are the store's read-only snapshots (serialize, never mutate them).
"""
from __future__ import annotations

import base64
import binascii
import json
import posixpath
import time
from dataclasses import dataclass
from typing import Any

from statemachine.errors import Gone, Invalid, PermanentClusterError, TransientClusterError
from statemachine.sim import selectors
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Obj, Store

TOO_OLD_LIST = "The resourceVersion for the provided list is too old."
CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list.")
#: How long a request for a resourceVersion the store has not reached yet waits (upstream 3 s).
FUTURE_RV_WAIT = 3.0
_TOKEN_VERSION = "meta.k8s.io/v1"


@dataclass(frozen=True)
class ListOptions:
    """The ListOptions of a list or watch request, checked."""

    resource_version: str = ""
    match: str = ""
    limit: int = 0
    continue_token: str = ""
    send_initial_events: bool | None = None
    allow_bookmarks: bool = False
    label_selector: str | None = None
    field_selector: str | None = None


def _bad_request(message: str) -> PermanentClusterError:
    return PermanentClusterError(message, status=400, reason="BadRequest")


def _parse_bool(name: str, text: str) -> bool:
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False", ""):
        return False
    raise _bad_request(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _invalid_list_options(problems: list[tuple[str, str, str]]) -> Invalid:
    """422 for ListOptions; ``problems`` are (cause reason, field, body)."""
    texts = list(dict.fromkeys(f"{field}: {body}" for _, field, body in problems))
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    exc = Invalid(f'ListOptions.meta.k8s.io "" is invalid: {joined}', status=422,
                  reason="Invalid")
    exc.status_details = {  # type: ignore[attr-defined]
        "group": "meta.k8s.io", "kind": "ListOptions",
        "causes": [{"reason": reason, "message": body, "field": field}
                   for reason, field, body in problems]}
    return exc


_FORBIDDEN, _NOT_SUPPORTED = "FieldValueForbidden", "FieldValueNotSupported"
_MATCH = "resourceVersionMatch"


def list_options(query: dict[str, str], *, watch: bool) -> ListOptions:
    """Parse and check the ListOptions of ``query`` (422 Invalid, 400 for unparsable values)."""
    limit_text = query.get("limit") or "0"
    try:
        limit = int(limit_text)
    except ValueError:
        raise _bad_request(f'strconv.ParseInt: parsing "{limit_text}": invalid syntax') from None
    send: bool | None = None
    if "sendInitialEvents" in query:
        send = _parse_bool("sendInitialEvents", query["sendInitialEvents"])
    opts = ListOptions(resource_version=query.get("resourceVersion") or "",
                       match=query.get(_MATCH) or "", limit=max(limit, 0),
                       continue_token=query.get("continue") or "", send_initial_events=send,
                       allow_bookmarks=_parse_bool("allowWatchBookmarks",
                                                   query.get("allowWatchBookmarks") or ""),
                       label_selector=query.get("labelSelector"),
                       field_selector=query.get("fieldSelector"))
    problems: list[tuple[str, str, str]] = []
    match = opts.match
    if watch:
        if send is not None and match != "NotOlderThan":
            problems.append((_FORBIDDEN, _MATCH, "Forbidden: sendInitialEvents requires setting "
                                                 "resourceVersionMatch to NotOlderThan"))
        if match:
            if send is None:
                problems.append((_FORBIDDEN, _MATCH, "Forbidden: resourceVersionMatch is "
                                 "forbidden for watch unless sendInitialEvents is provided"))
            if match != "NotOlderThan":
                problems.append((_NOT_SUPPORTED, _MATCH, f'Unsupported value: "{match}": '
                                                         'supported values: "NotOlderThan"'))
            if opts.continue_token:
                problems.append((_FORBIDDEN, _MATCH, "Forbidden: resourceVersionMatch is "
                                                     "forbidden when continue is provided"))
    else:
        if match:
            if not opts.resource_version:
                problems.append((_FORBIDDEN, _MATCH, "Forbidden: resourceVersionMatch is "
                                 "forbidden unless resourceVersion is provided"))
            if opts.continue_token:
                problems.append((_FORBIDDEN, _MATCH, "Forbidden: resourceVersionMatch is "
                                                     "forbidden when continue is provided"))
            if match not in ("Exact", "NotOlderThan"):
                problems.append((_NOT_SUPPORTED, _MATCH, f'Unsupported value: "{match}": '
                                 'supported values: "Exact", "NotOlderThan", ""'))
            if match == "Exact" and opts.resource_version == "0":
                problems.append((_FORBIDDEN, _MATCH, 'Forbidden: resourceVersionMatch "exact" '
                                                     'is forbidden for resourceVersion "0"'))
        if send is not None:
            problems.append((_FORBIDDEN, "sendInitialEvents",
                             "Forbidden: sendInitialEvents is forbidden for list"))
    if problems:
        raise _invalid_list_options(problems)
    return opts


def parse_resource_version(text: str) -> int:
    """A resourceVersion query value as an int (0 for "" and "0"); 400 when not a number."""
    if text in ("", "0"):
        return 0
    try:
        value = int(text)
        if value < 0 or not text.isdigit():
            raise ValueError
    except ValueError:
        raise _bad_request(f'resourceVersion: Invalid value: "{text}": strconv.ParseUint: '
                           f'parsing "{text}": invalid syntax') from None
    return value


def too_large(wanted: int, current: int) -> TransientClusterError:
    """504 for a resourceVersion the store has not reached (upstream's storage error)."""
    exc = TransientClusterError(f"Timeout: Too large resource version: {wanted}, current: "
                                f"{current}", status=504, reason="Timeout", retry_after=1)
    exc.status_details = {  # type: ignore[attr-defined]
        "causes": [{"reason": "ResourceVersionTooLarge",
                    "message": "Too large resource version"}],
        "retryAfterSeconds": 1}
    return exc


def wait_until_reached(store: Store, wanted: int) -> None:
    """Return once the store's resourceVersion is at least ``wanted``; 504 after 3 s."""
    deadline = time.monotonic() + FUTURE_RV_WAIT
    while store.resource_version < wanted:
        left = deadline - time.monotonic()
        if left <= 0 or store.closed:
            raise too_large(wanted, store.resource_version)
        store.wait_for_change(store.resource_version, min(left, 0.25))


# ----------------------------------------------------------------------------- continue tokens

def encode_continue(start: str, resource_version: int) -> str:
    data = json.dumps({"v": _TOKEN_VERSION, "rv": resource_version, "start": start},
                      separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode_continue(token: str) -> tuple[str, int]:
    """(start key, resourceVersion) of a token; 400 ``invalid continue token: ...`` if bad."""
    def bad(why: str) -> PermanentClusterError:
        return _bad_request(f"invalid continue token: continue key is not valid{why}")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if "=" in token or "+" in token or "/" in token:
            raise binascii.Error
    except (binascii.Error, ValueError):
        raise bad(": illegal base64 data") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise bad(": invalid character in the token") from None
    if not isinstance(data, dict):
        raise bad(": the token is not an object")
    if data.get("v") != _TOKEN_VERSION:
        raise bad(f': server does not recognize this encoded version "{data.get("v", "")}"')
    rv, start = data.get("rv"), data.get("start")
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0:
        raise bad(": incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise bad(": encoded start key empty (version meta.k8s.io/v1)")
    # As upstream, a key that path cleaning would change (``..``, ``//``) is refused, so a
    # token cannot reach outside the list's prefix.
    key = start if start.startswith("/") else "/" + start
    if posixpath.normpath(key) != key:
        raise bad(f": {start}")
    return start, rv


# ----------------------------------------------------------------------------- pages

def _relative_key(kind: Kind, namespace: str, key: tuple[str, str]) -> str:
    """The etcd key below the list's prefix: ``name`` in a namespace, else ``namespace/name``."""
    return key[1] if namespace or not kind.namespaced else f"{key[0]}/{key[1]}"


def list_page(store: Store, kind: Kind, namespace: str,
              opts: ListOptions) -> tuple[list[Obj], dict[str, Any]]:
    """The items of one list request and its ListMeta (see the module docstring)."""
    namespace = namespace if kind.namespaced else ""
    limit = opts.limit
    start = ""
    at: int | None = None
    if opts.continue_token:
        if opts.resource_version not in ("", "0"):
            raise _bad_request("specifying resource version is not allowed when using continue")
        start, token_rv = decode_continue(opts.continue_token)
        at = token_rv if token_rv > 0 else None
    else:
        wanted = parse_resource_version(opts.resource_version)
        if opts.resource_version == "0":
            limit = 0  # served from the watch cache, which does not paginate
        elif wanted and (opts.match == "Exact" or (not opts.match and limit)):
            if wanted > store.resource_version:
                wait_until_reached(store, wanted)
            at = wanted
        elif wanted:
            wait_until_reached(store, wanted)
    pinned = selectors.name_of_field_selector(opts.field_selector)
    only = (namespace, pinned) if pinned is not None and (namespace or not kind.namespaced) \
        else None
    try:
        state, rv = store.snapshot(kind, at, key=only)
    except Gone:
        if opts.continue_token:
            exc = Gone(CONTINUE_EXPIRED, status=410, reason="Expired")
            exc.status_metadata = {"continue": encode_continue(start, -1)}  # type: ignore[attr-defined]
            raise exc from None
        raise Gone(TOO_OLD_LIST, status=410, reason="Expired") from None
    match = selectors.combine(selectors.label_matcher(opts.label_selector),
                              selectors.field_matcher(opts.field_selector))
    keyed = [(_relative_key(kind, namespace, key), obj) for key, obj in state.items()
             if not namespace or key[0] == namespace]
    if start:
        keyed = [(k, o) for k, o in keyed if k >= start]
    if not limit:
        items = [o for _, o in sorted(((k, o) for k, o in keyed if match is None or match(o)),
                                      key=lambda pair: pair[0])]
        return items, {"resourceVersion": str(rv)}
    keyed.sort(key=lambda pair: pair[0])
    items = []
    last_index = -1
    for index, (_, obj) in enumerate(keyed):
        if len(items) == limit:
            break
        if match is None or match(obj):
            items.append(obj)
            last_index = index
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if len(items) == limit and last_index + 1 < len(keyed):
        meta["continue"] = encode_continue(keyed[last_index][0] + "\x00", rv)
        if match is None:
            meta["remainingItemCount"] = len(keyed) - last_index - 1
    return items, meta
