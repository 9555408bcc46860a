"""Offline helpers for the cold itinerary's tests (no cluster).

``render_cold(plan_path, outputs)`` renders every enabled state of ``itineraries/cold.yaml`` for
every VM of a simulated plan, with ``reads`` resolved offline from the plan's seed and ``outputs``
given by the test (what a run would have recorded), so that the templates are exercised with real
values, not ``smrun render``'s placeholders. State ``reads`` are resolved from the seed plus the
export token Secret KubeVirt would have generated (:func:`export_token_secret`).
"""
from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statemachine.context import vm_context
from statemachine.expressions import evaluate
from statemachine.itinerary import Itinerary, load_itinerary
from statemachine.parameters import compute_state_values, compute_values
from statemachine.plan import VM, Plan, load_plan
from statemachine.render import resolve_reads
from statemachine.sim.offline import SeedReads

from offline_render import render_actions

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLAN = REPO / "examples" / "cold" / "plan.yaml"
DATA = REPO / "tests" / "data" / "cold"

EXPORT_CA = ("-----BEGIN CERTIFICATE-----\nc2ltdWxhdGVkIGV4cG9ydCBDQQ==\n"
             "-----END CERTIFICATE-----\n")


@dataclass(frozen=True)
class Rendered:
    state: str
    cluster: str
    action: str
    manifest: dict[str, Any]


def itinerary() -> Itinerary:
    return load_itinerary(REPO / "itineraries" / "cold.yaml")


def export_outputs(ctx: Mapping[str, Any], *, ca: str = EXPORT_CA) -> dict[str, Any]:
    """Outputs as a run records them once the export is Ready (links for every source PVC)."""
    reads = ctx["reads"]
    vm = ctx["vm"]
    base = (f"https://virt-exportproxy-kubevirt.apps.source.sim.smrun.io/api/export.kubevirt.io/v1"
            f"/namespaces/{vm['namespace']}/virtualmachineexports/{vm['name']}/volumes")
    volumes = [{"name": pvc["metadata"]["name"],
                "formats": [{"format": "raw", "url": f"{base}/{pvc['metadata']['name']}/disk.img"},
                            {"format": "gzip", "url": f"{base}/{pvc['metadata']['name']}/disk.img.gz"}]}
               for pvc in reads["sourceClaims"]]
    stored = itinerary().state("StorePowerState").outputs["sourceRunStrategy"]
    return {"sourceRunStrategy": evaluate(stored, {**ctx, "object": reads["sourceVM"]}),
            "exportPhase": "Ready", "exportVolumes": volumes,
            "exportTokenSecret": f"export-token-{vm['name']}", "exportCA": ca}


EXPORT_TOKEN = "token"


def export_token_secret(namespace: str, vm_name: str) -> dict[str, Any]:
    """The token Secret KubeVirt generates for a VM's export (what the state read finds)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"export-token-{vm_name}", "namespace": namespace},
            "data": {"token": base64.b64encode(EXPORT_TOKEN.encode()).decode()}}


class _WithExportTokens:
    """A ReadSource: the seed, plus every VM's export token Secret on the source."""

    def __init__(self, seed: SeedReads) -> None:
        self.seed = seed

    def get(self, cluster: str, api_version: str, kind: str, namespace: str,
            name: str) -> dict[str, Any] | None:
        if (cluster, kind) == ("source", "Secret") and name.startswith("export-token-"):
            return export_token_secret(namespace, name[len("export-token-"):])
        return self.seed.get(cluster, api_version, kind, namespace, name)


def vm_ctx(plan: Plan, vm: VM, it: Itinerary,
           outputs: Callable[[Mapping[str, Any]], dict[str, Any]] = export_outputs) -> dict[str, Any]:
    """The context of ``vm`` after reads and predicates, with ``outputs(ctx)`` as its outputs."""
    assert plan.simulation is not None
    source = SeedReads.from_file(plan.simulation.seed)
    ctx = vm_context(plan, vm)
    reads = resolve_reads(it.reads, ctx, source, where="cold.yaml: ", values_of=it)
    values = compute_values(it, vm_context(plan, vm, reads=reads))
    ctx = {**vm_context(plan, vm, reads=reads), "values": values}
    predicates = {name: bool(evaluate(expr, ctx)) for name, expr in it.predicates.items()}
    predicates.setdefault("HasPreHook", any(h["step"] == "PreHook" for h in ctx["vm"]["hooks"]))
    predicates.setdefault("HasPostHook", any(h["step"] == "PostHook" for h in ctx["vm"]["hooks"]))
    ctx = {**vm_context(plan, vm, reads=reads, predicates=predicates), "values": values}
    ctx["outputs"] = outputs(ctx)
    return ctx


def render_cold(plan_path: Path, outputs: Callable[[Mapping[str, Any]], dict[str, Any]]
                = export_outputs) -> dict[str, list[Rendered]]:
    """``{vm name: [Rendered, ...]}``: every apply/ensure manifest of every enabled state."""
    plan = load_plan(plan_path)
    it = itinerary()
    assert plan.simulation is not None
    source = _WithExportTokens(SeedReads.from_file(plan.simulation.seed))
    out: dict[str, list[Rendered]] = {}
    for vm in plan.vms:
        ctx = vm_ctx(plan, vm, it, outputs)

        def state_context(state: Any, ctx: dict[str, Any]) -> dict[str, Any]:
            if state.reads:
                own = resolve_reads(state.reads, ctx, source, where="cold.yaml: ", pending=True)
                ctx = {**ctx, "reads": {**ctx["reads"], **own}}
            if state.values:  # the state's own values, over its reads (as the engine does)
                ctx = {**ctx, "values": {**ctx["values"], **compute_state_values(state, ctx)}}
            return ctx

        rendered = [Rendered(state.name, action.cluster or state.cluster, action.kind, doc)
                    for state, action, doc in render_actions(it, ctx, state_context)]
        out[vm.name] = rendered
    return out


