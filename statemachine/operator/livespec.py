"""What a running Plan takes from a change of its spec: the warm cutover (and the cancel flag).

A run works on the spec it started with (the plan is loaded, validated and preflighted once).
Two fields are instructions to a run rather than part of the plan, and are taken while it goes
on: ``spec.cancel`` (the worker cancels the engine) and the warm cutover, ``spec.cutover`` and
``spec.vms[].cutover``. The cutover reaches the engine the way ``smrun cutover`` reaches
``smrun run``: as the override file in the run's local state directory
(:mod:`statemachine.cutover`), which the engine re-reads when it changes, so the precopy loop
cuts over when its current round or wait ends.

A change of any other field is not applied to the running run (the status keeps the
generation it runs): it is taken when the run has ended, as a new generation.

This module reads specs and builds the override; it writes nothing and talks to no cluster.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statemachine.cutover import CutoverOverride, normalize_time
from statemachine.errors import UsageError

#: Spec fields a running Plan takes (plan-level; ``cutover`` also per VM).
LIVE_FIELDS = ("cancel", "cutover")


def _time(value: Any) -> str | None:
    if not value:
        return None
    try:
        return normalize_time(str(value))
    except UsageError:
        return None  # the plan's validation names it; a bad time moves nothing


def cutover_override(spec: Mapping[str, Any]) -> CutoverOverride:
    """Each VM's cutover under ``spec`` (its own, else the plan's) as an override.

    A VM without a time in ``spec`` is left out: it keeps the time its run started with (a
    cutover can be moved, not withdrawn, while the run goes on)."""
    plan_time = _time(spec.get("cutover"))
    vms: dict[str, str] = {}
    for vm in spec.get("vms") or []:
        if not isinstance(vm, Mapping):
            continue
        when = _time(vm.get("cutover")) or plan_time
        if when:
            vms[f"{vm.get('namespace')}/{vm.get('name')}"] = when
    return CutoverOverride(all=None, vms=vms)


def _without_live_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in spec.items() if k not in LIVE_FIELDS}
    vms = out.get("vms")
    if isinstance(vms, list):
        out["vms"] = [{k: v for k, v in vm.items() if k != "cutover"}
                      if isinstance(vm, Mapping) else vm for vm in vms]
    return out


def only_live_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether ``new`` differs from ``old`` in the fields a running Plan takes only."""
    return _without_live_fields(old) == _without_live_fields(new)
