"""Library entry points that compose the layers for a Python caller (``statemachine.preflight``).

:func:`preflight` runs the checks ``smrun validate`` and the start of ``smrun run`` run, against
two :class:`~statemachine.k8s.Cluster` objects the caller made (``statemachine.connect``, or
``statemachine.SimulatedClusters``), and returns the findings instead of printing them. It
applies nothing, prints nothing and raises nothing for a finding: deciding what a blocking
finding means is the caller's business (``smrun`` exits 3). The checks themselves are
:mod:`statemachine.engine.preflight`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from statemachine.errors import UsageError

if TYPE_CHECKING:
    from statemachine.engine.preflight import Findings
    from statemachine.itinerary import Itinerary
    from statemachine.k8s import Cluster
    from statemachine.plan import Plan

__all__ = ["preflight"]


def preflight(plan: Plan, itinerary: Itinerary, *, source: Cluster, target: Cluster,
              vms: Iterable[str] | None = None,
              servers: Mapping[str, str] | None = None) -> Findings:
    """Check ``plan`` with ``itinerary`` against ``source`` and ``target``; nothing is applied.

    Returns :class:`~statemachine.engine.preflight.Findings`: ``problems`` (blocking: a read
    that is missing or refused (403), a kind a cluster does not serve, a failed ``spec.preflight`` check, a
    permission gap), ``warnings``, ``rules`` (the Role rules that would close the permission
    gaps) and ``blocking``. ``vms`` limits the checks to these VMs (``name`` or
    ``namespace/name``; default: every VM of the plan). ``servers`` are the API server URLs
    (``{"source": ..., "target": ...}``) for templates that use ``clusters.*.server``;
    ``SimulatedClusters.servers`` gives them for simulated clusters.

    Raises ``ClusterError`` (e.g. ``ClusterUnreachable``) when a cluster cannot be asked,
    ``RenderBudgetExceeded`` for an itinerary over its render budget, ``UsageError`` for a VM
    the plan does not list.
    """
    from statemachine.engine.preflight import run_checks

    selected = None
    if vms is not None:
        wanted = list(vms)
        selected = [v for v in plan.vms if v.name in wanted or v.ref in wanted]
        unknown = sorted(set(wanted) - {v.name for v in selected} - {v.ref for v in selected})
        if unknown:
            raise UsageError(f"{plan.path}: no VM {', '.join(unknown)} in plan {plan.name}")
    return run_checks(plan, itinerary, {"source": source, "target": target}, vms=selected,
                      servers=servers)
