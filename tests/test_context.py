"""The template/expression context built from a plan and a VM (docs/itinerary.md, "Context")."""
from __future__ import annotations

from pathlib import Path

import yaml

from statemachine.context import labels_for, setup_context, vm_context, with_item
from statemachine.expressions import evaluate, render_string
from statemachine.plan import load_plan

VALID = Path(__file__).parent / "data" / "plans" / "valid"


def test_vm_context_has_every_documented_variable() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    ctx = vm_context(plan, plan.vms[0], reads={"sourceVM": {"kind": "VirtualMachine"}},
                     outputs={"connectURL": "10.0.0.1:1234"}, predicates={"HasPreHook": False},
                     run_id="r1")
    assert set(ctx) == {"plan", "vm", "settings", "params", "values", "reads", "outputs", "predicates", "run", "clusters"}
    assert ctx["vm"] == {"name": "web-1", "namespace": "shop", "targetName": "web-1",
                         "targetNamespace": "shop", "cutover": None, "key": "shop-web-1",
                         "hooks": [{"step": "PostHook", "hook": ctx["plan"]["hooks"][0]}]}
    assert ctx["plan"]["name"] == "sim-live" and ctx["plan"]["type"] == "live"
    assert ctx["run"] == {"id": "r1", "plan": "sim-live",
                          "labels": {"smrun.io/plan": "sim-live", "smrun.io/vm": "web-1",
                                     "smrun.io/vm-namespace": "shop", "smrun.io/run": "r1"}}
    assert ctx["clusters"]["intercluster"] is True
    assert ctx["outputs"]["connectURL"] == "10.0.0.1:1234"


def test_settings_have_defaults_applied_and_durations_in_seconds() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    settings = vm_context(plan, plan.vms[0])["settings"]
    assert settings["maxInFlight"] == 2
    assert settings["stepTimeout"] == 600
    assert settings["precopyInterval"] == 3600
    assert settings["requireMatchingInstanceTypes"] is False
    assert settings["cutoverMethod"] == "restartPaused"
    assert evaluate("settings.stepTimeout > 300", vm_context(plan, plan.vms[0])) is True


def test_the_context_is_plain_data_that_dumps_to_yaml() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    text = yaml.safe_dump(vm_context(plan, plan.vms[0]))
    assert "quiesce" in text


def test_storage_and_network_helpers_read_the_plan_map_from_the_context() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    ctx = vm_context(plan, plan.vms[0])
    assert evaluate("storage_for('ceph-rbd')", ctx) == {"storageClass": "gp3", "accessMode": "ReadWriteMany",
                                                        "volumeMode": "Block"}
    assert evaluate("storage_for('unmapped')", ctx) is None
    assert evaluate("network_for({'name': 'default', 'pod': {}})", ctx) == {"type": "pod"}


def test_hooks_are_visible_with_their_playbook_text() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    ctx = vm_context(plan, plan.vms[0])
    text = render_string("{{ vm.hooks[0].hook.image }} {{ vm.hooks[0].hook.playbook | b64encode | length > 0 }}", ctx)
    assert text == "quay.io/konveyor/hook-runner True"


def test_target_namespace_and_cutover_resolution_reach_the_context() -> None:
    plan = load_plan(VALID / "clusters.yaml")
    first, second = (vm_context(plan, vm)["vm"] for vm in plan.vms)
    assert (first["targetNamespace"], first["cutover"]) == ("vms", "2026-12-01T02:00:00Z")
    assert (second["targetName"], second["targetNamespace"]) == ("db-2-new", "other")


def test_intercluster_compares_servers_when_known_else_references() -> None:
    plan = load_plan(VALID / "clusters.yaml")
    vm = plan.vms[0]
    assert vm_context(plan, vm)["clusters"]["intercluster"] is True  # east vs west contexts
    same = vm_context(plan, vm, servers={"source": "https://a:6443", "target": "https://a:6443"})
    assert same["clusters"]["intercluster"] is False
    assert same["clusters"]["source"] == {"name": "east", "server": "https://a:6443"}


def test_setup_context_has_no_vm_and_labels_without_vm() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    ctx = setup_context(plan, run_id="r9")
    assert "vm" not in ctx and "predicates" not in ctx
    assert ctx["run"]["labels"] == {"smrun.io/plan": "sim-live", "smrun.io/run": "r9"}


def test_long_label_values_are_shortened_to_valid_labels() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    labels = labels_for(plan, plan.vms[0], run_id="x" * 80, state="CreateStandbyVM")
    assert labels["smrun.io/state"] == "CreateStandbyVM"
    assert len(labels["smrun.io/run"]) <= 63


def test_with_item_adds_item_and_index_without_changing_the_original() -> None:
    plan = load_plan(VALID / "sim-live.yaml")
    ctx = vm_context(plan, plan.vms[0])
    local = with_item(ctx, {"name": "disk"}, 2)
    assert (local["item"], local["index"]) == ({"name": "disk"}, 2)
    assert "item" not in ctx
