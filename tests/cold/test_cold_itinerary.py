"""The cold itinerary loads, has the flow of issue 6, and its conditions judge objects right."""
from __future__ import annotations

from typing import Any

import pytest

from statemachine import readiness
from statemachine.itinerary import load_itinerary
from statemachine.plan import load_plan

from .offline import EXAMPLE_PLAN, itinerary, vm_ctx

FLOW = ["Started", "PreHook", "StorePowerState", "PowerOffSource", "WaitForPowerOff",
        "CreateExport", "EnsureResources", "CreateImportSecrets",
        "CreateDataVolumes", "CreateVM", "WaitForTargetVM", "PostHook", "DeleteExport",
        "Completed"]


def test_builtin_cold_is_this_file_and_loads() -> None:
    it = load_itinerary("cold")
    assert it.migration_type == "cold"
    assert list(it.state_names) == FLOW


def test_hooks_are_conditional() -> None:
    it = itinerary()
    for state, predicate in (("PreHook", "HasPreHook"), ("PostHook", "HasPostHook")):
        when = it.state(state).when
        assert when is not None and when.all == (predicate,)


def test_undo_restores_the_source_and_removes_what_was_created() -> None:
    it = itinerary()
    power_off = it.state("PowerOffSource")
    assert len(power_off.undo) == 1 and power_off.undo[0].kind == "patch"
    assert power_off.undo[0].patch == {"spec": {"runStrategy": "{{ outputs.sourceRunStrategy }}"}}
    for name in ("CreateExport", "CreateImportSecrets", "CreateDataVolumes", "CreateVM"):
        assert [a.kind for a in it.state(name).undo] == ["delete_created"], name
    # Shared objects (Secrets, ConfigMaps, instancetypes) are never undone.
    assert it.state("EnsureResources").undo == ()
    assert it.commit is not None and it.commit.after == "CreateVM"


def _ctx(vm_name: str = "web-1") -> dict[str, Any]:
    plan = load_plan(EXAMPLE_PLAN)
    return vm_ctx(plan, plan.vm(vm_name), itinerary())


def _verdict(state: str, obj: dict[str, Any] | None, ctx: dict[str, Any] | None = None) -> str:
    it = itinerary()
    return readiness.evaluate(obj, it.state(state).readiness, ctx or _ctx()).status


def test_power_off_waits_for_the_vmi_to_go() -> None:
    assert _verdict("PowerOffSource", {"status": {"phase": "Running"}}) == "pending"
    assert _verdict("PowerOffSource", None) == "ready"
    assert _verdict("PowerOffSource", {"status": {"phase": "Succeeded"}}) == "ready"
    assert _verdict("WaitForPowerOff", {"status": {"printableStatus": "Stopping"}}) == "pending"
    assert _verdict("WaitForPowerOff", {"status": {"printableStatus": "Stopped"}}) == "ready"


def _export(phase: str, external: bool = True, volumes: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "tokenSecretRef": "export-token-web-1",
                              "conditions": [{"type": "Ready", "status": str(phase == "Ready"),
                                              "reason": "PodReady" if phase == "Ready" else "InUse"}]}
    if phase == "Ready":
        vols = [{"name": f"pvc-{i}", "formats": [{"format": "raw", "url": f"https://h/{i}"}]}
                for i in range(volumes)]
        status["links"] = {"internal": {"volumes": vols}}
        if external:
            status["links"]["external"] = {"cert": "", "volumes": vols}
    return {"status": status}


def test_export_is_ready_only_with_external_links_for_every_disk() -> None:
    it = itinerary()
    ctx = _ctx("db-1")  # two disks
    spec = it.state("CreateExport").readiness
    assert readiness.evaluate(_export("Pending"), spec, ctx).status == "pending"
    assert readiness.evaluate(_export("Ready", volumes=2), spec, ctx).status == "ready"
    assert readiness.evaluate(_export("Skipped"), spec, ctx).status == "ready"
    # Ready without external links (no export proxy route on the source): fails, and says why.
    verdict = readiness.evaluate(_export("Ready", external=False, volumes=2), spec, ctx)
    assert verdict.status == "failed"
    assert "links.external" in verdict.message
    assert readiness.progress(_export("Pending"), spec, ctx) == "Pending InUse"


def test_export_outputs_carry_links_token_secret_and_ca() -> None:
    from statemachine.expressions import evaluate
    it = itinerary()
    ctx = _ctx()
    obj = _export("Ready")
    outputs = {name: evaluate(expr, {**ctx, "object": obj})
               for name, expr in it.state("CreateExport").outputs.items()}
    assert outputs["exportVolumes"][0]["name"] == "pvc-0"
    assert outputs["exportTokenSecret"] == "export-token-web-1"
    assert outputs["exportCA"] == ""
    # The token itself is never an output (outputs are journaled): only the Secret's name is.
    assert not any("token" in name.lower() and name != "exportTokenSecret"
                   for s in it.states for name in s.outputs)


def test_token_is_a_state_read_of_the_import_secrets_state() -> None:
    it = itinerary()
    (read,) = it.state("CreateImportSecrets").reads
    assert (read.name, read.cluster, read.optional) == ("exportToken", "source", False)
    assert (read.object.api_version, read.object.kind) == ("v1", "Secret")
    assert read.object.name == "{{ outputs.exportTokenSecret }}"
    assert read.object.namespace == "{{ vm.namespace }}"
    # The wait for a missing token Secret is bounded by the state's own timeout.
    assert it.state("CreateImportSecrets").timeout == 300


@pytest.mark.parametrize(("status", "expected"), [
    ({"phase": "ImportInProgress", "progress": "45.12%"}, "pending"),
    ({"phase": "Succeeded", "progress": "100.0%"}, "ready"),
    ({"phase": "Failed"}, "failed"),
    ({"phase": "ImportInProgress", "restartCount": 7}, "failed"),
])
def test_datavolume_readiness(status: dict[str, Any], expected: str) -> None:
    assert _verdict("CreateDataVolumes", {"status": status}) == expected


def test_datavolume_progress_is_cdi_progress() -> None:
    it = itinerary()
    spec = it.state("CreateDataVolumes").readiness
    ctx = {**_ctx(), "item": {"metadata": {"name": "web-1-root"}}, "index": 0}
    assert readiness.progress({"status": {"progress": "45.12%"}}, spec, ctx) == "web-1-root 45.12%"
    assert readiness.progress({"status": {}}, spec, ctx) == "web-1-root N/A"


def test_target_vm_must_run_when_the_source_ran() -> None:
    running = {"status": {"printableStatus": "Running", "ready": True}}
    stopped = {"status": {"printableStatus": "Stopped"}}
    ctx = _ctx("web-1")
    ctx["outputs"]["sourceRunStrategy"] = "Always"
    assert _verdict("WaitForTargetVM", stopped, ctx) == "pending"
    assert _verdict("WaitForTargetVM", running, ctx) == "ready"
    ctx["outputs"]["sourceRunStrategy"] = "Halted"
    assert _verdict("WaitForTargetVM", stopped, ctx) == "ready"


def test_stored_power_state_maps_the_deprecated_running_field() -> None:
    from statemachine.expressions import evaluate
    expr = itinerary().state("StorePowerState").outputs["sourceRunStrategy"]
    ctx = _ctx()
    assert evaluate(expr, {**ctx, "object": {"spec": {"runStrategy": "RerunOnFailure"}}}) == "RerunOnFailure"
    assert evaluate(expr, {**ctx, "object": {"spec": {"running": True}}}) == "Always"
    assert evaluate(expr, {**ctx, "object": {"spec": {"running": False}}}) == "Halted"
