"""The cold templates render valid manifests: upstream OpenAPI, storage/network maps, secrets.

Manifests are rendered from the example plan's seed with the outputs a run records (see
``conftest.render_cold``), and once through ``smrun render``'s own path (placeholders for
outputs), so both the real and the preview rendering are covered.
"""
from __future__ import annotations

import base64
from typing import Any


from statemachine.context import with_item
from statemachine.expressions import evaluate, render_string
from statemachine.itinerary import load_itinerary
from statemachine.parameters import compute_state_values
from statemachine.plan import load_plan
from statemachine.render import render_plan
from statemachine.sim.offline import seed_reads

from upstream import validate_all

from .offline import (DATA, EXAMPLE_PLAN, EXPORT_CA, Rendered, export_outputs, itinerary,
                      render_cold, vm_ctx)

def _by_kind(items: list[Rendered], kind: str) -> list[dict[str, Any]]:
    return [r.manifest for r in items if r.manifest["kind"] == kind]


def _validate(manifests: list[dict[str, Any]], upstream_validator: Any) -> int:
    registry, validator = upstream_validator
    return validate_all(manifests, registry, validator)


def test_every_rendered_manifest_validates_upstream(upstream_validator: Any) -> None:
    rendered = render_cold(EXAMPLE_PLAN)
    manifests = [r.manifest for items in rendered.values() for r in items]
    # 3 exports + 4 DataVolumes + 3 VMs
    assert _validate(manifests, upstream_validator) == 10
    hooks = render_cold(DATA / "hook-plan.yaml")
    assert _validate([r.manifest for items in hooks.values() for r in items], upstream_validator) > 0


def test_smrun_render_preview_validates_upstream(upstream_validator: Any) -> None:
    plan = load_plan(EXAMPLE_PLAN)
    it = load_itinerary("cold")
    rendered = [r for r in render_plan(plan, it, seed_reads(plan)) if r.action in ("apply", "ensure")]
    assert {r.state for r in rendered} >= {"CreateExport", "CreateDataVolumes", "CreateVM"}
    assert _validate([r.manifest for r in rendered], upstream_validator) == 10


def test_export_has_a_long_ttl_and_no_fixed_token() -> None:
    (export,) = _by_kind(render_cold(EXAMPLE_PLAN)["web-1"], "VirtualMachineExport")
    assert export["spec"] == {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine",
                                         "name": "web-1"}, "ttlDuration": "12h"}
    assert export["metadata"]["namespace"] == "shop"


def test_datavolumes_import_from_the_export_with_the_storage_map() -> None:
    items = render_cold(EXAMPLE_PLAN)["db-1"]
    dvs = {dv["metadata"]["name"]: dv for dv in _by_kind(items, "DataVolume")}
    assert set(dvs) == {"db-1-root", "db-1-data"}
    root, data = dvs["db-1-root"], dvs["db-1-data"]
    http = root["spec"]["source"]["http"]
    assert http["url"].endswith("/virtualmachineexports/db-1/volumes/db-1-root/disk.img.gz")
    assert http["secretExtraHeaders"] == ["db-1-export-token"]
    assert http["certConfigMap"] == "db-1-export-ca"
    # standard -> fast, RWO, Block; bulk -> fast, Filesystem (access mode left to the profile)
    assert root["spec"]["storage"] == {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
                                       "volumeMode": "Block",
                                       "resources": {"requests": {"storage": "20Gi"}}}
    assert data["spec"]["storage"] == {"storageClassName": "fast", "volumeMode": "Filesystem",
                                       "resources": {"requests": {"storage": "50Gi"}}}
    assert root["metadata"]["annotations"]["cdi.kubevirt.io/storage.bind.immediate.requested"] == "true"
    assert all(r.cluster == "target" for r in items if r.manifest["kind"] == "DataVolume")


def test_import_secrets_carry_token_header_and_ca() -> None:
    items = render_cold(EXAMPLE_PLAN)["web-1"]
    secrets = {s["metadata"]["name"]: s for s in _by_kind(items, "Secret")}
    header = base64.b64decode(secrets["web-1-export-token"]["data"]["token"]).decode()
    assert header == "x-kubevirt-export-token:token"
    (ca,) = _by_kind(items, "ConfigMap")
    assert ca["metadata"]["name"] == "web-1-export-ca" and ca["data"] == {"ca.pem": EXPORT_CA}
    # The cloud-init Secret the VM references is copied (EnsureResources), data as it is.
    copied = secrets["web-1-cloudinit"]
    assert copied["metadata"]["namespace"] == "shop" and "userdata" in copied["data"]
    assert "uid" not in copied["metadata"] and "status" not in copied


def test_empty_export_ca_means_no_configmap_and_default_trust() -> None:
    rendered = render_cold(EXAMPLE_PLAN, lambda ctx: export_outputs(ctx, ca=""))["web-1"]
    assert _by_kind(rendered, "ConfigMap") == []
    (dv,) = _by_kind(rendered, "DataVolume")
    assert "certConfigMap" not in dv["spec"]["source"]["http"]


def test_target_vm_restores_run_strategy_and_maps_networks() -> None:
    rendered = render_cold(EXAMPLE_PLAN)
    (db,) = _by_kind(rendered["db-1"], "VirtualMachine")
    assert db["spec"]["runStrategy"] == "Always"
    assert "dataVolumeTemplates" not in db["spec"]
    spec = db["spec"]["template"]["spec"]
    assert spec["networks"] == [{"name": "default", "pod": {}},
                                {"name": "backend", "multus": {"networkName": "shop/backend"}}]
    assert spec["volumes"] == [{"name": "root", "dataVolume": {"name": "db-1-root"}},
                               {"name": "data", "persistentVolumeClaim": {"claimName": "db-1-data"}}]
    (batch,) = _by_kind(rendered["batch-1"], "VirtualMachine")
    assert batch["spec"]["runStrategy"] == "Halted"


def test_older_vm_shape_is_normalised(upstream_validator: Any) -> None:
    rendered = render_cold(DATA / "variants-plan.yaml")["app-1"]
    (vm,) = _by_kind(rendered, "VirtualMachine")
    spec = vm["spec"]
    assert spec["runStrategy"] == "Always" and "running" not in spec
    assert "dataVolumeTemplates" not in spec
    assert spec["instancetype"] == {"kind": "VirtualMachineInstancetype", "name": "small"}
    assert spec["preference"] == {"name": "fedora"}
    assert spec["updateVolumesStrategy"] == "Replacement"
    # The namespaced instancetype and the ConfigMap are copied; the cluster preference is not.
    assert [m["metadata"]["name"] for m in _by_kind(rendered, "VirtualMachineInstancetype")] == ["small"]
    assert [m["metadata"]["name"] for m in _by_kind(rendered, "ConfigMap")] == ["app-1-config", "app-1-export-ca"]
    assert _by_kind(rendered, "VirtualMachinePreference") == []
    (dv,) = _by_kind(rendered, "DataVolume")
    assert dv["spec"]["storage"] == {"storageClassName": "local-wffc",
                                     "resources": {"requests": {"storage": "8Gi"}}}
    assert _validate([r.manifest for r in rendered], upstream_validator) == 4


def test_ignored_network_drops_network_and_interface() -> None:
    rendered = render_cold(DATA / "hook-plan.yaml")
    (db,) = _by_kind(rendered["db-1"], "VirtualMachine")
    spec = db["spec"]["template"]["spec"]
    assert [n["name"] for n in spec["networks"]] == ["default"]
    assert [i["name"] for i in spec["domain"]["devices"]["interfaces"]] == ["default"]


def test_hooks_run_as_jobs_on_the_target() -> None:
    rendered = render_cold(DATA / "hook-plan.yaml")
    jobs = [r for r in rendered["web-1"] if r.manifest["kind"] == "Job"]
    assert [r.state for r in jobs] == ["PreHook", "PostHook"]
    assert all(r.cluster == "target" for r in jobs)
    pre = jobs[0].manifest
    assert pre["spec"]["activeDeadlineSeconds"] == 300
    assert pre["metadata"]["name"] == "web-1-prehook-quiesce"
    container = pre["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "quay.io/konveyor/hook-runner:latest"
    # The readiness object of the hook states is the Job the shared template creates.
    it = itinerary()
    plan = load_plan(DATA / "hook-plan.yaml")
    ctx = vm_ctx(plan, plan.vm("web-1"), it)
    for state, job in (("PreHook", jobs[0]), ("PostHook", jobs[1])):
        spec = it.state(state).readiness
        assert spec is not None and spec.object is not None
        # In the state's context: the Job's name is one of the state's own values.
        own = compute_state_values(it.state(state), ctx)
        ref = spec.object.render({**ctx, "values": {**ctx["values"], **own}})
        assert (ref.kind, ref.namespace, ref.name) == ("Job", "shop", job.manifest["metadata"]["name"])
    assert not [r for r in rendered["db-1"] if r.manifest["kind"] == "Job"]


def test_sim_fault_annotation_reaches_only_the_target_datavolume() -> None:
    rendered = render_cold(DATA / "fail-plan.yaml")
    (dv1,) = _by_kind(rendered["web-1"], "DataVolume")
    (dv2,) = _by_kind(rendered["web-2"], "DataVolume")
    assert dv1["metadata"]["annotations"]["sim.smrun.io/fail"] == "true"
    assert "sim.smrun.io/fail" not in dv2["metadata"]["annotations"]
    (vm1,) = _by_kind(rendered["web-1"], "VirtualMachine")
    assert "sim.smrun.io/fail" not in vm1["metadata"].get("annotations", {})


def _findings(plan_file: str) -> dict[str, list[str]]:
    """Preflight rule name -> rendered messages of the checks that do not hold."""
    plan = load_plan(DATA / plan_file if "/" not in plan_file else plan_file)
    it = itinerary()
    found: dict[str, list[str]] = {}
    for vm in plan.vms:
        ctx = vm_ctx(plan, vm, it)
        for rule in it.preflight:
            if rule.when is not None and not evaluate(rule.when, ctx):
                continue
            items = [None] if rule.for_each is None else list(evaluate(rule.for_each, ctx))
            for index, item in enumerate(items):
                local = ctx if rule.for_each is None else with_item(ctx, item, index)
                if not evaluate(rule.check, local):
                    found.setdefault(rule.name, []).append(
                        " ".join(render_string(rule.message, local).split()))
    return found


def test_preflight_passes_for_the_example() -> None:
    assert _findings(str(EXAMPLE_PLAN)) == {}


def test_preflight_finds_collisions_and_unmapped_storage_and_networks() -> None:
    found = _findings("collision-plan.yaml")
    assert set(found) == {"TargetNamespaceExists", "DisksAreBound", "StorageMapped",
                          "NetworkMapped", "TargetVMNameFree", "TargetDataVolumeNamesFree",
                          "TargetClaimNamesFree", "ClusterPreferencePresent"}
    assert found["StorageMapped"] == [
        "no storage map entry for storage class unmapped-class of disk web-1-root: "
        "add one to spec.map.storage"]
    assert "network storage" in found["NetworkMapped"][0]
    assert "shop/web-1 that this plan did not create" in found["TargetVMNameFree"][0]
    assert "shop/web-1-root" in found["TargetDataVolumeNamesFree"][0]

