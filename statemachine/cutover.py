"""Change a warm migration's cutover time while it runs (``smrun cutover PLAN --at TIME``).

The plan file's ``spec.cutover`` (and per-VM ``cutover``) is read once, when ``smrun run`` starts.
To move the cutover later, :func:`set_cutover` writes an *override file* in the plan's state
directory, ``<state_dir>/<plan>/cutover.json``::

    {"all": "2026-12-01T02:00:00Z", "vms": {"shop/web-1": "2026-12-01T01:30:00Z"}}

``all`` applies to every VM of the plan, ``vms`` to single VMs (a VM's own entry wins over
``all``, and both win over the plan file). Times are stored in UTC with a ``Z`` and whole seconds,
because the warm itinerary compares ``vm.cutover`` with ``now()`` as text. The file is replaced
atomically, so a reader never sees half of it; a later call merges into it.

:func:`cutover_for` is what the engine calls when it builds a VM's context, so that
``vm.cutover`` is the override when there is one; it re-reads the file only when its mtime
changed. The running engine needs no signal: the warm itinerary evaluates ``vm.cutover`` when a
precopy round or wait ends, and the context is rebuilt for every evaluation.

The operator writes the same file (:func:`write_override`) when a running Plan object's
``spec.cutover`` changes (``statemachine/operator/livespec.py``).

This module does not talk to a cluster, start a run, or check that a run is in progress (an
override written before ``smrun run`` applies from its start).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from statemachine.errors import StateDirError, UsageError, state_dir_error

FILE_NAME = "cutover.json"
MAX_BYTES = 1024 * 1024  # the override file is a few hundred bytes; anything larger is not ours

__all__ = ["CutoverOverride", "FILE_NAME", "cutover_for", "normalize_time", "read_override",
           "set_cutover", "with_override", "write_override"]


@dataclass(frozen=True)
class CutoverOverride:
    """The override file's content: a plan-wide time and per-VM times (``namespace/name``)."""

    all: str | None = None
    vms: Mapping[str, str] = field(default_factory=dict)

    def for_vm(self, key: str, default: str | None) -> str | None:
        """The cutover of VM ``key`` (``namespace/name``): its own override, else the plan-wide
        one, else ``default`` (the plan file's value)."""
        return self.vms.get(key) or self.all or default


def normalize_time(text: str, *, now: datetime | None = None) -> str:
    """``text`` (RFC 3339, or ``now``) as UTC ``YYYY-MM-DDTHH:MM:SSZ``; UsageError if unreadable.

    A time without an offset is refused rather than guessed (local time or UTC?).
    """
    if text.strip().lower() == "now":
        moment = now or datetime.now(timezone.utc)
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--at {text!r}: not an RFC 3339 time such as 2026-12-01T02:00:00Z "
                             "(or 'now')") from None
        if moment.tzinfo is None:
            raise UsageError(f"--at {text!r}: give a time zone (Z or +HH:MM)")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_override(directory: Path) -> CutoverOverride:
    """The override in ``directory`` (a plan's state directory); empty when there is none."""
    try:
        with open(Path(directory) / FILE_NAME, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)  # written by `smrun cutover`: small; never read more
        if len(raw) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        data = json.loads(raw)
    except FileNotFoundError:
        return CutoverOverride()
    except OSError as exc:
        raise state_dir_error(Path(directory) / FILE_NAME, exc, "read the cutover override") from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{Path(directory) / FILE_NAME}: unreadable cutover override: "
                         f"{str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{Path(directory) / FILE_NAME}: a cutover override must be a JSON object")
    vms = data.get("vms") or {}
    if not isinstance(vms, dict):
        raise UsageError(f"{Path(directory) / FILE_NAME}: vms must be a JSON object")
    return CutoverOverride(all=data.get("all") or None,
                           vms={str(k): str(v) for k, v in vms.items() if v})


def _resolve_vms(plan: Any, names: Iterable[str]) -> list[str]:
    """``namespace/name`` keys of the plan's VMs given by ``names`` (``name`` or ``ns/name``)."""
    keys = []
    for name in names:
        try:
            vm = plan.vm(name)
        except KeyError:
            raise UsageError(f"VM {name!r} is not in plan {plan.name}") from None
        keys.append(f"{vm.namespace}/{vm.name}")
    return keys


def set_cutover(plan: Any, *, state_dir: Path, at: str, vms: list[str] | None = None) -> str:
    """Set the cutover of ``plan``'s VMs (``vms``; default: all) to ``at``; return one line
    saying what was set (the command line prints it; this module prints nothing).

    ``at`` is an RFC 3339 time or ``now``. Raises
    :class:`UsageError` (exit code 2) for a plan that is not warm, an unknown VM or a bad time.
    """
    if getattr(plan, "type", None) != "warm":
        raise UsageError(f"plan {plan.name} is a {plan.type} migration: only warm migrations have "
                         "a cutover")
    when = normalize_time(at)
    keys = _resolve_vms(plan, vms or [])
    directory = Path(state_dir) / plan.name
    current = read_override(directory)
    if keys:
        data: dict[str, Any] = {"all": current.all, "vms": {**current.vms, **{k: when for k in keys}}}
    else:
        # Plan-wide: replaces every earlier per-VM override too, as the newest instruction.
        data = {"all": when, "vms": {}}
    write_override(directory, CutoverOverride(all=data["all"], vms=data["vms"]))
    which = ", ".join(keys) if keys else f"all VMs of plan {plan.name}"
    return (f"cutover of {which} set to {when}; a running smrun cuts over when the current precopy "
            "round or wait ends")


def write_override(directory: Path, override: CutoverOverride) -> None:
    """Replace the override file in ``directory`` (a plan's state directory) atomically; times
    must already be normalized (:func:`normalize_time`). The operator writes one when a running
    Plan's ``spec.cutover`` changes."""
    data = {"all": override.all, "vms": dict(override.vms)}
    tmp = directory / (FILE_NAME + ".tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        os.replace(tmp, directory / FILE_NAME)
    except OSError as exc:
        raise state_dir_error(directory / FILE_NAME, exc, "write the cutover override") from None


_cache: dict[Path, tuple[float, CutoverOverride]] = {}


def cutover_for(directory: Path, key: str, default: str | None) -> str | None:
    """``vm.cutover`` for VM ``key`` (``namespace/name``) of the plan whose state directory is
    ``directory``: the override when one is set, else ``default``. Cheap to call often: the file
    is parsed again only when its mtime changes; an unreadable file keeps the last good value."""
    path = Path(directory) / FILE_NAME
    try:
        mtime = path.stat().st_mtime_ns / 1e9
    except FileNotFoundError:
        _cache.pop(path, None)
        return default
    cached = _cache.get(path)
    if cached is None or cached[0] != mtime:
        try:
            cached = (mtime, read_override(directory))
        except (UsageError, StateDirError):
            if cached is None:
                return default
        else:
            _cache[path] = cached
    return cached[1].for_vm(key, default)


def with_override(ctx: dict[str, Any], directory: Path, key: str) -> dict[str, Any]:
    """``ctx`` with ``vm.cutover`` replaced by the override for VM ``key`` when one is set (a new
    ``vm`` mapping; ``ctx`` itself is changed only in that key). The engine's hook: call it at the
    end of ``VmModel.context()`` with the plan's state directory."""
    vm = ctx.get("vm")
    if isinstance(vm, Mapping):
        wanted = cutover_for(directory, key, vm.get("cutover"))
        if wanted != vm.get("cutover"):
            ctx["vm"] = {**vm, "cutover": wanted}
    return ctx
