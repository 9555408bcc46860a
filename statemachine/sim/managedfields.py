"""Field ownership: ``metadata.managedFields`` on every write, and server-side apply.

Each write is recorded for one manager (the request's ``fieldManager``, else the User-Agent up to
its first ``/`` as kube-apiserver derives it; the simulated controllers write as the upstream
controller they stand for, see :func:`acting_as`):

- create, replace and every non-apply patch (and status writes, with ``subresource: status``) are
  ``Update`` entries: the manager gains the fields the write added or changed, and every other
  manager loses them;
- an apply is an ``Apply`` entry holding exactly the fields of the applied configuration. A field
  another manager owns and the configuration changes is a conflict (409, upstream's message and
  causes) unless ``force``, which moves it. Fields the manager applied before and no longer
  applies are removed from the object when no other manager owns them (or anything inside them).
- fields a write removes leave every manager's set; an entry whose set becomes empty goes.

Entries are sorted as upstream sorts them (operation, time, manager, apiVersion, subresource);
an entry's ``time`` moves only when its set changes, so a write that changes nothing is still a
no-op. A client that sends ``managedFields`` replaces them (``[{}]`` clears them), as upstream.

Not here: the set algebra (``fieldsets.py``), the per-kind list types (``fieldtypes.py``) and the
merge of an applied configuration (``patches.apply_merge``).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from statemachine.errors import Conflict, Invalid
from statemachine.sim import fieldsets, fieldtypes
from statemachine.sim.fieldsets import Schema, Trie
from statemachine.sim.kinds import Kind
from statemachine.sim.patches import apply_merge

Obj = dict[str, Any]
Entry = dict[str, Any]

#: The manager of writes that come neither from a request nor from a controller (seeding).
DEFAULT_MANAGER = "kubectl-create"
MAX_MANAGER_LENGTH = 128

_local = threading.local()


@contextmanager
def acting_as(manager: str) -> Iterator[None]:
    """Store writes made by this thread inside the block are recorded for ``manager``."""
    previous = getattr(_local, "manager", None)
    _local.manager = manager
    try:
        yield
    finally:
        _local.manager = previous


def acting_manager() -> str:
    return getattr(_local, "manager", None) or DEFAULT_MANAGER


def manager_from_user_agent(user_agent: str) -> str:
    """kube-apiserver's default manager: the User-Agent before its first ``/``, printable
    characters only, at most 128 bytes."""
    out = ""
    for ch in user_agent.split("/")[0]:
        if not ch.isprintable():
            continue
        if len((out + ch).encode()) > MAX_MANAGER_LENGTH:
            break
        out += ch
    return out


def validate_options(options: str, manager: str, *, apply: bool = False,
                     force: str | None = None, dry_run: list[str] | None = None) -> None:
    """CreateOptions/UpdateOptions/PatchOptions validation of ``fieldManager`` (and ``force``),
    then of ``dryRun`` (``statemachine.sim.dryrun``; upstream's order of causes): 422
    ``<options>.meta.k8s.io "" is invalid: ...`` as upstream answers."""
    from statemachine.sim import dryrun

    causes = []
    if apply and not manager:
        causes.append(("fieldManager", "FieldValueRequired",
                       "Required value: is required for apply patch"))
    if options == "PatchOptions" and not apply and force is not None:
        causes.append(("force", "FieldValueForbidden",
                       "Forbidden: may not be specified for non-apply patch"))
    if len(manager.encode()) > MAX_MANAGER_LENGTH:
        causes.append(("fieldManager", "FieldValueTooLong",
                       f"Too long: may not be more than {MAX_MANAGER_LENGTH} bytes"))
    bad_dry_run = dryrun.cause(dry_run)
    if bad_dry_run is not None:
        reason, field, message = bad_dry_run
        causes.append((field, reason, message))
    if not causes:
        return
    text = [f"{field}: {message}" for field, _, message in causes]
    joined = text[0] if len(text) == 1 else "[" + ", ".join(text) + "]"
    exc = Invalid(f'{options}.meta.k8s.io "" is invalid: {joined}', status=422,
                  reason="Invalid")
    exc.status_details = {  # type: ignore[attr-defined]
        "group": "meta.k8s.io", "kind": options,
        "causes": [{"reason": reason, "message": message, "field": field}
                   for field, reason, message in causes]}
    raise exc


def schema_of(kind: Kind) -> Schema:
    return Schema(fieldtypes.rules_for(kind), not kind.custom)


def _scope(kind: Kind, subresource: str | None) -> str:
    if subresource == "status":
        return "status"
    return "main" if kind.status_subresource else "all"


def _identity(entry: Entry) -> tuple[str, str, str]:
    return (entry.get("manager", ""), entry.get("operation", ""), entry.get("subresource", ""))


def _entry(manager: str, operation: str, kind: Kind, now: str, fields: Trie,
           subresource: str | None) -> Entry:
    out = {"manager": manager, "operation": operation, "apiVersion": kind.api_version,
           "time": now, "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        out["subresource"] = subresource
    return out


def _sorted(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: (e.get("operation", ""), e.get("time", ""),
                                          e.get("manager", ""), e.get("apiVersion", ""),
                                          e.get("subresource", "")))


def _store(obj: Obj, entries: list[Entry]) -> None:
    if entries:
        obj["metadata"]["managedFields"] = _sorted(entries)
    else:
        obj["metadata"].pop("managedFields", None)


def _sent_or_kept(sent: Any, kept: Any) -> list[Entry]:
    """The entries a write starts from: the request's when it sent some, else the stored ones."""
    if isinstance(sent, list) and sent:
        if sent == [{}]:
            return []
        return [e for e in sent if isinstance(e, dict) and isinstance(e.get("fieldsV1"), dict)]
    return list(kept) if isinstance(kept, list) else []


# ------------------------------------------------------------------ Update
def on_create(kind: Kind, obj: Obj, manager: str, now: str, *, applied: bool = False) -> None:
    """Record the creation of ``obj`` (in place): an Update entry, or an Apply entry for an
    apply that created the object."""
    schema = schema_of(kind)
    scope = _scope(kind, None)
    entries = _sent_or_kept(obj["metadata"].get("managedFields"), [])
    if applied:
        fields = fieldsets.set_of(obj, schema, scope)
    else:
        fields = fieldsets.compare({}, obj, schema, scope)[0]
    if fields:
        entries.append(_entry(manager, "Apply" if applied else "Update", kind, now, fields, None))
    _store(obj, entries)


def on_update(kind: Kind, old: Obj, new: Obj, manager: str, subresource: str | None,
              now: str) -> None:
    """Record a non-apply write that turns ``old`` into ``new`` (``new`` is changed in place)."""
    schema = schema_of(kind)
    entries = _sent_or_kept(new["metadata"].get("managedFields"),
                            old["metadata"].get("managedFields"))
    changed, removed = fieldsets.compare(old, new, schema, _scope(kind, subresource))
    if not changed and not removed:
        _store(new, entries)
        return
    me = (manager, "Update", subresource or "")
    out: list[Entry] = []
    mine: Entry | None = None
    for entry in entries:
        if _identity(entry) == me:
            mine = entry
            continue
        kept = _without(entry, changed, removed)
        if kept is not None:
            out.append(kept)
    before = mine["fieldsV1"] if mine is not None else None
    if before is not None and fieldsets.difference(changed, before) is None:
        fields: Trie | None = before  # it already owns all of it
    else:
        fields = fieldsets.union(before or {}, changed)
    if fields and removed:
        fields = fieldsets.difference(fields, removed)
    if fields:
        if mine is not None and fields is before:
            out.append(mine)
        else:
            out.append(_entry(manager, "Update", kind, now, fields, subresource))
    _store(new, out)


def _without(entry: Entry, *tries: Trie) -> Entry | None:
    """``entry`` without the members of ``tries`` (the same dict if it loses nothing)."""
    fields: Trie | None = entry.get("fieldsV1") or {}
    for trie in tries:
        if trie and fields is not None:
            fields = fieldsets.difference(fields, trie)
    if not fields:
        return None
    if fields is entry.get("fieldsV1"):
        return entry
    return {**entry, "fieldsV1": fields}


# ------------------------------------------------------------------ Apply
def _drop_nulls(value: Any) -> Any:
    """An applied configuration's ``null`` sets nothing."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def applied_config(config: Obj) -> Obj:
    """The configuration as it is merged: nulls dropped, server-set metadata ignored."""
    out: Obj = _drop_nulls(config)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items()
                           if k not in fieldsets.UNTRACKED_META or k in ("name", "namespace")}
    return out


def apply(kind: Kind, live: Obj, config: Obj, manager: str, *, force: bool,
          subresource: str | None, now: str) -> Obj:
    """The object after ``manager`` applies ``config`` to ``live``; raises the 409 apply
    conflict. ``live`` is not modified."""
    schema = schema_of(kind)
    scope = _scope(kind, subresource)
    config = applied_config(config)
    if scope == "status":
        config = {k: v for k, v in config.items() if k in ("apiVersion", "kind", "metadata",
                                                          "status")}
    mine = fieldsets.set_of(config, schema, scope)
    merged: Obj = apply_merge(live, config, schema)
    changed, _ = fieldsets.compare(live, merged, schema, scope)
    me = (manager, "Apply", subresource or "")
    entries = list(live["metadata"].get("managedFields") or [])
    previous: Trie | None = None
    others: list[Entry] = []
    conflicts: list[tuple[Entry, list[tuple[str, ...]]]] = []
    for entry in entries:
        if _identity(entry) == me:
            previous = entry.get("fieldsV1") or {}
            continue
        others.append(entry)
        if changed:
            both = fieldsets.intersection(entry.get("fieldsV1") or {}, changed)
            if both is not None:
                conflicts.append((entry, sorted(fieldsets.members(both))))
    if conflicts and not force:
        raise conflict_error(conflicts)
    if conflicts:
        others = [e for e in (_without(e, changed) for e in others) if e is not None]
    result = merged
    dropped = fieldsets.difference(previous, mine) if previous is not None else None
    if dropped:
        # Whatever still holds something applied now, or owned by another manager, stays.
        owned: Trie = mine
        for entry in others:
            owned = fieldsets.union(owned, entry.get("fieldsV1") or {})
        doomed = fieldsets.prunable(dropped, owned)
        if doomed:
            result = json.loads(json.dumps(merged))
            fieldsets.remove(result, doomed, schema)
    _, removed = fieldsets.compare(live, result, schema, scope)
    out = [e for e in (_without(e, removed) for e in others) if e is not None]
    if mine:
        out.append(_entry(manager, "Apply", kind, now, mine, subresource)
                   if mine != previous else _previous_entry(entries, me))

    if result is merged:
        result = dict(merged)
        result["metadata"] = dict(merged["metadata"])
    _store(result, out)
    return result


def _previous_entry(entries: list[Entry], me: tuple[str, str, str]) -> Entry:
    return next(e for e in entries if _identity(e) == me)


def _print_manager(entry: Entry) -> str:
    out = json.dumps(entry.get("manager", ""), ensure_ascii=False)
    if entry.get("subresource"):
        out += f' with subresource {json.dumps(entry["subresource"])}'
    if entry.get("operation") == "Update":
        out += f' using {entry.get("apiVersion", "")}'
        if entry.get("time"):
            out += f' at {entry["time"]}'
    return out


def conflict_error(conflicts: list[tuple[Entry, list[tuple[str, ...]]]]) -> Conflict:
    """The 409 of an apply that changes fields other managers own (upstream's wording)."""
    flat = [(entry, path) for entry, paths in conflicts for path in paths]
    causes = [{"reason": "FieldManagerConflict",
               "message": f"conflict with {_print_manager(entry)}",
               "field": fieldsets.path_string(path)} for entry, path in flat]
    if len(flat) == 1:
        entry, path = flat[0]
        message = (f"Apply failed with 1 conflict: conflict with {_print_manager(entry)}: "
                   f"{fieldsets.path_string(path)}")
    else:
        lines = []
        for entry, paths in sorted(conflicts, key=lambda c: _identity(c[0])):
            lines.append(f"conflicts with {_print_manager(entry)}:")
            lines.extend(f"- {fieldsets.path_string(p)}" for p in paths)
        message = f"Apply failed with {len(flat)} conflicts: " + "\n".join(lines)
    exc = Conflict(message, status=409, reason="Conflict")
    exc.status_details = {"causes": causes}  # type: ignore[attr-defined]
    return exc
