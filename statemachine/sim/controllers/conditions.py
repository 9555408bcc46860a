"""Small status helpers shared by the simulated controllers: conditions, timestamps, annotations.

Conditions are kept in the shape the owning API uses: KubeVirt and CDI conditions carry
``lastProbeTime``/``lastHeartbeatTime`` and ``lastTransitionTime``; ``metav1.Condition`` (backup)
carries ``lastTransitionTime`` only. ``lastTransitionTime`` changes only when ``status`` changes,
as upstream does, so rewriting the same condition on every tick is a no-op write (no event).

This module knows nothing about any particular kind and never touches a store.
"""
from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from statemachine.sim.store import Obj, now_rfc3339

#: Annotation making a DataVolume or a Job fail (product.md §7).
FAIL_ANNOTATION = "sim.smrun.io/fail"
#: Annotation on a source VM making its decentralized migration fail at a VMIM phase.
FAIL_MIGRATION_AT = "sim.smrun.io/fail-migration-at"
#: Annotation on a source VM pausing its migration at a source VMIM phase (until removed).
HOLD_MIGRATION_AT = "sim.smrun.io/hold-migration-at"


def now() -> str:
    """The current time as the apiserver writes it (RFC 3339, seconds, UTC)."""
    return now_rfc3339()


def parse_time(value: str | None) -> _dt.datetime | None:
    """An RFC 3339 timestamp as written by :func:`now` (or with fractions/offsets); ``None`` if absent
    or unreadable."""
    if not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def meta(obj: Mapping[str, Any], field: str, default: Any = "") -> Any:
    return (obj.get("metadata") or {}).get(field, default)


def wants_failure(obj: Mapping[str, Any]) -> bool:
    """Whether ``sim.smrun.io/fail: "true"`` is set on the object."""
    return annotations_of(obj).get(FAIL_ANNOTATION, "").lower() == "true"


def get_condition(status: Mapping[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def condition_is(status: Mapping[str, Any] | None, ctype: str, value: str = "True") -> bool:
    cond = get_condition(status, ctype)
    return cond is not None and cond.get("status") == value


def set_condition(status: Obj, ctype: str, value: str, reason: str = "", message: str = "", *,
                  style: str = "kubevirt") -> None:
    """Insert or update one condition in ``status["conditions"]`` in place.

    ``style``: ``kubevirt`` (lastProbeTime null + lastTransitionTime), ``cdi`` (lastHeartbeatTime +
    lastTransitionTime) or ``meta`` (metav1.Condition: lastTransitionTime only). The transition time
    is kept when ``status`` did not change; the probe/heartbeat time is not refreshed on every
    tick, because that would make every reconcile a write.
    """
    conds: list[dict[str, Any]] = list(status.get("conditions") or [])
    old = next((c for c in conds if c.get("type") == ctype), None)
    stamp = now()
    cond: dict[str, Any] = {"type": ctype, "status": value}
    if reason or style == "meta":
        cond["reason"] = reason
    if message or style == "meta":
        cond["message"] = message
    if old is not None and old.get("status") == value:
        cond["lastTransitionTime"] = old.get("lastTransitionTime", stamp)
        if style == "cdi":
            cond["lastHeartbeatTime"] = old.get("lastHeartbeatTime", stamp)
    else:
        cond["lastTransitionTime"] = stamp
        if style == "cdi":
            cond["lastHeartbeatTime"] = stamp
    if style == "kubevirt":
        cond["lastProbeTime"] = None
    if old is not None:
        conds[conds.index(old)] = cond
    else:
        conds.append(cond)
    status["conditions"] = conds


def remove_condition(status: Obj, ctype: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def parse_quantity(value: Any) -> int:
    """A Kubernetes quantity (``10Gi``, ``512Mi``, ``1G``, ``1000``) in bytes; 0 when unreadable."""
    text = str(value or "").strip()
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            try:
                return int(float(text[: -len(suffix)]) * factor)
            except ValueError:
                return 0
    try:
        return int(float(text))
    except ValueError:
        return 0


def binary_si(value: int) -> str:
    """``value`` bytes as Go's ``resource.NewQuantity(value, BinarySI).String()`` writes it: the
    largest of Ki…Ei that divides it exactly (10737418240 is ``10Gi``), else the plain number."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        factor = 1 << (10 * ("KMGTPE".index(suffix[0]) + 1))
        if value and value % factor == 0:
            return f"{value // factor}{suffix}"
    return str(value)


def event(ctx_store: Any, involved: Mapping[str, Any], reason: str, message: str,
          etype: str = "Normal") -> None:
    """Record an Event of virt-controller about ``involved`` (see ``statemachine.sim.events``)."""
    from statemachine.sim import events  # events imports the store, as this module does

    events.record(ctx_store, involved, etype, reason, message,
                  component="virtualmachine-controller")
