"""Every manifest `smrun render` produces for the example plans is valid against upstream OpenAPI.

The schemas are the ones the simulator ships (``statemachine/sim/data/crd-schemas.json.gz``,
generated from the upstream KubeVirt and CDI OpenAPI documents by ``scripts/gen_sim_schemas.py``),
so the test needs nothing beside the repository.

- KubeVirt and CDI kinds: each kind's structural schema, strict about unknown fields (``status``
  is not checked). A KubeVirt or CDI manifest whose apiVersion/kind upstream does not define
  fails.
- Core kinds: those documents carry no full definition of Secret, ConfigMap, Namespace, Job or
  PersistentVolumeClaim, so the parts they do define are checked -- ``metadata`` against
  ``ObjectMeta`` and a PVC's ``spec`` against ``PersistentVolumeClaimSpec`` (strict) -- plus the
  kind's documented top-level fields.
- Separately, every KubeVirt/CDI kind rendered must be one the simulator serves, or the example
  could not run against it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from statemachine.itinerary import Itinerary
from statemachine.plan import load_plan
from statemachine.providers import itinerary_for_plan
from statemachine.render import RenderedManifest, render_plan
from statemachine.sim import schemas
from statemachine.sim.offline import seed_reads
from statemachine.sim.structural import StructuralSchema
from upstream import strict_problems

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*/plan.yaml"))
LIVE_EXAMPLE = ROOT / "examples" / "live" / "plan.yaml"

# Top-level fields of core kinds (Kubernetes API reference), checked by name.
CORE_FIELDS = {
    ("v1", "Namespace"): {"apiVersion", "kind", "metadata", "spec"},
    ("v1", "Secret"): {"apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"},
    ("v1", "ConfigMap"): {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"},
    ("v1", "PersistentVolumeClaim"): {"apiVersion", "kind", "metadata", "spec"},
    ("v1", "ServiceAccount"): {"apiVersion", "kind", "metadata", "secrets", "imagePullSecrets",
                               "automountServiceAccountToken"},
    ("batch/v1", "Job"): {"apiVersion", "kind", "metadata", "spec"},
}


class UpstreamValidator:
    """Strict checks against the upstream schemas the simulator ships (unknown fields are
    problems; ``status`` is not checked)."""

    def knows(self, api_version: str, kind: str) -> bool:
        return schemas.kind_schema(api_version, kind) is not None

    def object_problems(self, manifest: dict[str, Any]) -> list[str]:
        raw = schemas.kind_schema(manifest["apiVersion"], manifest["kind"])
        assert raw is not None
        schema = StructuralSchema(raw)
        body = json.loads(json.dumps(manifest))
        found = [f"{path}: unknown field" for path in schema.prune(body, skip=("status",))]
        return found + [f"{f}: {m}" for _, f, m in schema.validate(body, skip=("status",))]

    def meta_problems(self, meta: Any) -> list[str]:
        return strict_problems(schemas.object_meta(), meta, "")

    def pvc_spec_problems(self, spec: Any) -> list[str]:
        return strict_problems(schemas.core_type("PersistentVolumeClaimSpec"), spec, "")


@pytest.fixture(scope="module")
def upstream() -> UpstreamValidator:
    validator = UpstreamValidator()
    assert validator.knows("kubevirt.io/v1", "VirtualMachine")
    assert validator.knows("cdi.kubevirt.io/v1beta1", "DataVolume")
    return validator


def rendered(plan_path: Path) -> list[RenderedManifest]:
    plan = load_plan(plan_path)
    itinerary: Itinerary = itinerary_for_plan(plan)
    return [m for m in render_plan(plan, itinerary, seed_reads(plan)) if m.action in ("apply", "ensure")]


# Kinds KubeVirt serves whose schema the upstream swagger snapshot does not contain (checked by hand:
# kubevirt-swagger.json defines v1alpha1.VirtualMachineBackup but no VirtualMachineBackupTracker).
NOT_IN_UPSTREAM_OPENAPI = {("backup.kubevirt.io/v1alpha1", "VirtualMachineBackupTracker")}


def _kubevirt_group(api_version: str) -> bool:
    return api_version.split("/")[0].endswith("kubevirt.io")


def problems_of(manifest: dict[str, Any], upstream: UpstreamValidator) -> list[str] | None:
    """Problems found, or ``None`` for kinds that are neither KubeVirt/CDI nor core."""
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    if upstream.knows(api_version, kind):
        return upstream.object_problems(manifest)
    if (api_version, kind) in NOT_IN_UPSTREAM_OPENAPI:
        # Served by KubeVirt as an alpha CRD but absent from the swagger snapshot: check what we can.
        found = [f"{key}: not a top-level field" for key in manifest
                 if key not in ("apiVersion", "kind", "metadata", "spec")]
        return found + [f"metadata.{p}" for p in upstream.meta_problems(manifest["metadata"])]
    if _kubevirt_group(api_version):
        return [f"{api_version} {kind} is not defined upstream"]
    fields = CORE_FIELDS.get((api_version, kind))
    if fields is None:
        return None
    found = [f"{key}: not a field of {kind}" for key in manifest if key not in fields]
    found += [f"metadata.{p}" for p in upstream.meta_problems(manifest["metadata"])]
    if kind == "PersistentVolumeClaim":
        found += [f"spec.{p}" for p in upstream.pvc_spec_problems(manifest.get("spec", {}))]
    return found


def test_the_live_example_exists() -> None:
    assert LIVE_EXAMPLE.is_file(), "examples/live/plan.yaml is the acceptance example of render"


@pytest.mark.parametrize("plan_path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_every_rendered_manifest_of_the_examples_is_valid_upstream(
        plan_path: Path, upstream: UpstreamValidator) -> None:
    checked: dict[str, int] = {}
    failures: list[str] = []
    for m in rendered(plan_path):
        found = problems_of(m.manifest, upstream)
        if found is None:
            continue
        group = m.manifest["apiVersion"].split("/")[0] if "/" in m.manifest["apiVersion"] else "core"
        checked[group] = checked.get(group, 0) + 1
        failures += [f"{m.vm or 'setup'} {m.state} {m.manifest['kind']} {m.manifest['metadata']['name']}: {p}"
                     for p in found]
    assert failures == []
    # The test is not vacuous: a migration applies KubeVirt objects; examples/custom (a backup
    # and restart, not a migration) applies ConfigMaps and patches only.
    if plan_path.parent.name != "custom":
        assert checked.get("kubevirt.io", 0) > 0, checked
    assert checked.get("cdi.kubevirt.io", 0) + checked.get("core", 0) > 0, checked


def test_the_checks_do_catch_an_invalid_manifest(upstream: UpstreamValidator) -> None:
    vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": "x"},
          "spec": {"runing": True, "template": {"spec": {"domain": {"devices": {}}}}}}
    assert any("runing" in p for p in problems_of(vm, upstream) or [])
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x", "lables": {}},
           "spec": {"accessModes": "ReadWriteOnce"}}
    found = problems_of(pvc, upstream) or []
    assert any("lables" in p for p in found) and any(p.startswith("spec.accessModes") for p in found)
    assert problems_of({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "strngData": {}},
                       upstream) == ["strngData: not a field of Secret"]
    wrong_version = {"apiVersion": "cdi.kubevirt.io/v1", "kind": "DataVolume", "metadata": {"name": "d"}}
    assert problems_of(wrong_version, upstream) == ["cdi.kubevirt.io/v1 DataVolume is not defined upstream"]


@pytest.mark.parametrize("plan_path", EXAMPLES, ids=[p.parent.name for p in EXAMPLES])
def test_every_rendered_kubevirt_kind_is_served_by_the_simulator(plan_path: Path) -> None:
    from statemachine.sim.kinds import KindRegistry

    registry = KindRegistry.default()
    if plan_path.parent.name == "cold" and registry.by_kind("export.kubevirt.io/v1", "VirtualMachineExport") is None:
        # Known mismatch at the time of writing: templates/cold/export.yaml.j2 uses export.kubevirt.io/v1
        # (defined upstream) while statemachine/sim/kinds.py serves only v1beta1. Reported for the
        # integrator; remove this once the simulator serves v1 too.
        pytest.xfail("the simulator does not serve export.kubevirt.io/v1 VirtualMachineExport yet")
    unserved = sorted({f"{m.manifest['apiVersion']} {m.manifest['kind']}" for m in rendered(plan_path)
                       if _kubevirt_group(m.manifest["apiVersion"])
                       and registry.by_kind(m.manifest["apiVersion"], m.manifest["kind"]) is None})
    assert unserved == []
