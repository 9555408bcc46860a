"""What the live itinerary would create for the example plan: valid upstream objects, right content.

Every manifest comes from ``smrun render``'s code path (reads resolved from the example's seed).
KubeVirt, CDI and instancetype objects are validated against the upstream schemas the simulator
ships (the same data and code its API server admits with); the PVC spec against the shipped
``PersistentVolumeClaimSpec`` (from the KubeVirt OpenAPI document).
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from statemachine.render import RenderedManifest
from statemachine.sim.kinds import KindRegistry

from statemachine.sim.schemas import core_type
from tests.live.conftest import EXAMPLE_DIR, RUN_ID, find, load_yaml, plan_variant, render_example
from upstream import strict_problems

SEED = load_yaml(EXAMPLE_DIR / "seed.yaml")


@pytest.fixture(scope="module")
def rendered() -> dict[str | None, list[RenderedManifest]]:
    return render_example()


def _objects(rendered: dict[str | None, list[RenderedManifest]], vm: str,
             kind: str | None = None) -> list[dict[str, Any]]:
    return [m.manifest for m in rendered[vm] if m.action in ("apply", "ensure")
            and (kind is None or m.manifest["kind"] == kind)]


def _one(rendered: dict[str | None, list[RenderedManifest]], vm: str, kind: str,
         name: str | None = None) -> dict[str, Any]:
    found = [o for o in _objects(rendered, vm, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"{vm}: {kind} {name}: {len(found)} rendered"
    return found[0]


def test_every_manifest_validates_against_upstream_openapi(
        rendered: dict[str | None, list[RenderedManifest]], upstream_validator: Any) -> None:
    registry = KindRegistry.default()
    pvc_spec = core_type("PersistentVolumeClaimSpec")
    checked: set[str] = set()
    for vm in ("web-1", "web-2", "db-1"):
        for obj in _objects(rendered, vm):
            kind = registry.by_kind(obj["apiVersion"], obj["kind"])
            assert kind is not None, f"{obj['apiVersion']} {obj['kind']} is not a known kind"
            if upstream_validator.knows(kind):
                assert upstream_validator.problems(kind, obj) == [], (vm, obj["kind"])
                checked.add(obj["kind"])
            if obj["kind"] == "PersistentVolumeClaim":
                assert strict_problems(pvc_spec, obj["spec"], "spec") == []
                checked.add(obj["kind"])
    # The objects KubeVirt and CDI act on are all checked against their schemas.
    assert {"DataVolume", "VirtualMachine", "VirtualMachineInstanceMigration",
            "VirtualMachineInstancetype", "PersistentVolumeClaim"} <= checked


def test_target_datavolumes_are_blank_mapped_and_sized(
        rendered: dict[str | None, list[RenderedManifest]]) -> None:
    dv = _one(rendered, "db-1", "DataVolume", "db-1-root")
    assert dv["spec"]["source"] == {"blank": {}}
    assert dv["spec"]["storage"] == {"storageClassName": "fast-rwx", "accessModes": ["ReadWriteMany"],
                                     "volumeMode": "Block",
                                     "resources": {"requests": {"storage": "20Gi"}}}
    assert dv["metadata"]["annotations"]["cdi.kubevirt.io/storage.bind.immediate.requested"] == "true"
    pvc = _one(rendered, "db-1", "PersistentVolumeClaim", "db-1-data")
    assert pvc["spec"] == {"storageClassName": "fast-rwx", "accessModes": ["ReadWriteMany"],
                           "volumeMode": "Filesystem", "resources": {"requests": {"storage": "50Gi"}}}
    assert "dataSource" not in pvc["spec"] and "labels" not in pvc["metadata"]


def test_block_disks_take_the_source_capacity_unless_the_datavolume_asks(tmp_path: Path) -> None:
    def edit(seed: dict[str, Any]) -> None:
        # An array that over-allocates: the bound Block PVC is bigger than its request.
        find(seed["source"], "PersistentVolumeClaim", "db-1-root")["status"]["capacity"]["storage"] = "21Gi"
        find(seed["source"], "PersistentVolumeClaim", "db-1-data")["status"]["capacity"]["storage"] = "60Gi"
        find(seed["source"], "DataVolume", "web-1-root")["spec"]["storage"]["resources"]["requests"] \
            ["storage"] = "12Gi"
        del find(seed["source"], "DataVolume", "db-1-root")["spec"]["storage"]["resources"]
    out = render_example(plan_variant(tmp_path, seed_edit=edit))
    assert _one(out, "db-1", "DataVolume")["spec"]["storage"]["resources"]["requests"]["storage"] == "21Gi"
    # Filesystem: the request, not the capacity.
    assert _one(out, "db-1", "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"] == "50Gi"
    # A request on the source DataVolume wins over its PVC.
    assert _one(out, "web-1", "DataVolume")["spec"]["storage"]["resources"]["requests"]["storage"] == "12Gi"


def test_standby_vm_waits_as_receiver_and_keeps_the_guest_identity(
        rendered: dict[str | None, list[RenderedManifest]]) -> None:
    source = find(SEED["source"], "VirtualMachine", "db-1")
    vm = _one(rendered, "db-1", "VirtualMachine")
    assert vm["spec"]["runStrategy"] == "WaitAsReceiver"
    assert vm["metadata"]["annotations"]["kubevirt.io/restore-run-strategy"] == "Always"
    assert "dataVolumeTemplates" not in vm["spec"]
    spec, src = vm["spec"]["template"]["spec"], source["spec"]["template"]["spec"]
    assert spec["domain"] == src["domain"]          # firmware UUID, MAC, disks verbatim
    assert spec["volumes"] == src["volumes"]
    assert spec["networks"] == [{"name": "default", "pod": {}},
                                {"name": "backend", "multus": {"networkName": "shop/backend"}}]


def test_instancetype_references_lose_their_revision(
        rendered: dict[str | None, list[RenderedManifest]]) -> None:
    web2 = _one(rendered, "web-2", "VirtualMachine")
    assert web2["spec"]["instancetype"] == {"name": "web-medium", "kind": "VirtualMachineInstancetype"}
    web1 = _one(rendered, "web-1", "VirtualMachine")
    assert web1["spec"]["instancetype"]["kind"] == "VirtualMachineClusterInstancetype"
    assert web1["spec"]["preference"] == {"name": "fedora", "kind": "VirtualMachineClusterPreference"}
    copied = _one(rendered, "web-2", "VirtualMachineInstancetype", "web-medium")
    assert copied["metadata"]["namespace"] == "shop"
    assert copied["spec"] == find(SEED["source"], "VirtualMachineInstancetype", "web-medium")["spec"]
    # Cluster-scoped instancetypes are checked in preflight, never created.
    assert not _objects(rendered, "web-1", "VirtualMachineClusterInstancetype")


def test_networks_follow_the_network_map(tmp_path: Path) -> None:
    def edit(plan: dict[str, Any]) -> None:
        plan["spec"]["map"]["network"] = [
            {"source": {"type": "pod"}, "destination": {"type": "pod"}},
            {"source": {"name": "shop/backend"}, "destination": {"type": "multus", "name": "west/backend-10"}}]
    out = render_example(plan_variant(tmp_path, plan_edit=edit))
    nets = _one(out, "db-1", "VirtualMachine")["spec"]["template"]["spec"]["networks"]
    assert nets[1] == {"name": "backend", "multus": {"networkName": "west/backend-10"}}


def test_shared_secrets_keep_their_type_and_data(
        rendered: dict[str | None, list[RenderedManifest]]) -> None:
    source = find(SEED["source"], "Secret", "web-tls")
    for vm in ("web-1", "web-2"):
        m = next(m for m in rendered[vm] if m.manifest.get("kind") == "Secret")
        assert m.action == "ensure"           # shared: created once, accepted when it exists
        assert m.manifest["type"] == "kubernetes.io/tls"
        assert m.manifest["metadata"]["annotations"]["smrun.io/source"] == "shop/web-tls"
        assert set(m.manifest["data"]) == set(source["data"])
        cm = next(m for m in rendered[vm] if m.manifest.get("kind") == "ConfigMap")
        assert cm.action == "ensure" and cm.manifest["data"] == \
            find(SEED["source"], "ConfigMap", "web-config")["data"]
    db1 = next(m.manifest for m in rendered["db-1"] if m.manifest.get("kind") == "Secret")
    assert db1["type"] == "Opaque" and db1["metadata"]["name"] == "db-1-cloudinit"


def test_migrations_pair_up(rendered: dict[str | None, list[RenderedManifest]]) -> None:
    target = next(m for m in rendered["web-1"] if m.state == "CreateTargetMigration").manifest
    source = next(m for m in rendered["web-1"] if m.state == "CreateSourceMigration")
    assert source.cluster == "source"
    assert target["spec"] == {"vmiName": "web-1", "receive": {"migrationID": f"shop-web-1-{RUN_ID}"}}
    assert RUN_ID in target["metadata"]["name"] and RUN_ID in source.manifest["metadata"]["name"]
    # The address and the ID are the target migration's outputs (placeholders when rendering).
    assert source.manifest["spec"] == {"vmiName": "web-1", "sendTo": {
        "connectURL": "<output:connectURL>", "migrationID": "<output:migrationID>"}}


def test_prehook_is_a_hook_runner_job_with_the_playbook(
        rendered: dict[str | None, list[RenderedManifest]]) -> None:
    assert not [m for m in rendered["web-1"] if m.state == "PreHook"]
    job = _one(rendered, "db-1", "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "quay.io/konveyor/hook-runner"
    assert container["command"][-1] == "/tmp/hook/playbook.yml"
    config = _one(rendered, "db-1", "ConfigMap", job["metadata"]["name"])
    assert config["data"]["playbook.yml"] == (EXAMPLE_DIR / "hooks" / "quiesce.yml").read_text()
    assert "name: db-1" in config["data"]["workload.yml"]


def test_ca_exchange_appends_the_peer_bundle(rendered: dict[str | None, list[RenderedManifest]]) -> None:
    from statemachine.sim.addresses import ca_pem

    patches = {m.cluster: m.manifest for m in rendered[None] if m.action == "patch"}
    assert set(patches) == {"source", "target"}
    assert patches["target"]["patch"]["data"]["ca-bundle"].strip() == ca_pem("source").strip()
    assert patches["source"]["patch"]["data"]["ca-bundle"].strip() == ca_pem("target").strip()


def test_secret_values_are_the_sources(rendered: dict[str | None, list[RenderedManifest]]) -> None:
    # render masks Secret data for display only in its text output; the manifests carry the data.
    secret = next(m.manifest for m in rendered["db-1"] if m.manifest.get("kind") == "Secret")
    assert base64.b64decode(secret["data"]["userdata"]).startswith(b"#cloud-config")


def test_the_schema_check_is_not_vacuous(rendered: dict[str | None, list[RenderedManifest]],
                                         upstream_validator: Any) -> None:
    vm = json.loads(json.dumps(_one(rendered, "web-1", "VirtualMachine")))
    vm["spec"]["runStrategyy"] = vm["spec"].pop("runStrategy")
    kind = KindRegistry.default().by_kind("kubevirt.io/v1", "VirtualMachine")
    assert kind is not None
    assert ("spec.runStrategyy", "unknown field") in upstream_validator.problems(kind, vm)


def test_service_exports_only_with_submariner(tmp_path: Path,
                                              rendered: dict[str | None, list[RenderedManifest]]) -> None:
    assert not [m for m in rendered["web-1"] if m.manifest.get("kind") == "ServiceExport"]

    def submariner(plan: dict[str, Any]) -> None:
        plan["spec"]["settings"]["submariner"] = True
    out = render_example(plan_variant(tmp_path, plan_edit=submariner))
    exports = [m for m in out["web-1"] if m.manifest.get("kind") == "ServiceExport"]
    assert sorted(m.manifest["metadata"]["name"] for m in exports) == \
        ["migration-web-1-shop", "sync-web-1-shop"]
    assert all(m.cluster == "target" and m.manifest["metadata"]["namespace"] == "kubevirt"
               for m in exports)
    # ... and removed again once the VM is migrated.
    deleted = [m.manifest["object"]["name"] for m in out["web-1"]
               if m.state == "Cleanup" and m.manifest["object"]["kind"] == "ServiceExport"]
    assert sorted(deleted) == ["migration-web-1-shop", "sync-web-1-shop"]


def test_posthook_runs_after_cleanup(tmp_path: Path) -> None:
    def posthook(plan: dict[str, Any]) -> None:
        plan["spec"]["vms"][0]["hooks"] = [{"step": "PostHook", "hook": "quiesce"}]
    out = render_example(plan_variant(tmp_path, plan_edit=posthook))
    states = [m.state for m in out["web-1"]]
    assert "PreHook" not in states
    jobs = [m for m in out["web-1"] if m.manifest.get("kind") == "Job"]
    assert [(m.state, m.manifest["metadata"]["name"]) for m in jobs] == \
        [("PostHook", "web-1-posthook-quiesce")]
    # The migrations are removed before the post-hook runs, so a failing hook leaks nothing.
    assert states.index("Cleanup") < states.index("PostHook")


def test_data_volume_templates_are_not_copied(rendered: dict[str | None, list[RenderedManifest]]) -> None:
    # web-1's source VM creates its disk from a dataVolumeTemplate; the target VM refers to the
    # blank DataVolume smrun made instead (an import template would describe a copy that never
    # happens on the target).
    assert find(SEED["source"], "VirtualMachine", "web-1")["spec"]["dataVolumeTemplates"]
    vm = _one(rendered, "web-1", "VirtualMachine")
    assert "dataVolumeTemplates" not in vm["spec"]
    assert {"name": "root", "dataVolume": {"name": "web-1-root"}} in vm["spec"]["template"]["spec"]["volumes"]
    assert _one(rendered, "web-1", "DataVolume", "web-1-root")["spec"]["source"] == {"blank": {}}
