"""Every manifest `smrun render` produces for the example plans is valid against upstream OpenAPI.

The upstream Swagger documents (KubeVirt, CDI) are read in place from ``$SMRUN_UPSTREAM``
(default ``/work/shared/upstream``; relative paths are relative to the working directory, as CI
sets ``SMRUN_UPSTREAM=../shared/upstream``). If the variable is set and the folder is missing the
tests FAIL; if it is unset and the default is missing they are skipped.

- KubeVirt and CDI kinds: the definition behind each kind's create operation, found from the
  swagger paths (``/apis/<group>/<version>/namespaces/{namespace}/<plural>``), strict about unknown
  fields (``null`` is accepted where a field may be omitted, ``status`` is not checked). A KubeVirt
  or CDI manifest whose apiVersion/kind upstream does not define fails.
- Core kinds: those documents carry no full definition of Secret, ConfigMap, Namespace, Job or
  PersistentVolumeClaim, so the parts they do define are checked -- ``metadata`` against
  ``ObjectMeta`` and a PVC's ``spec`` against ``PersistentVolumeClaimSpec`` (strict) -- plus the
  kind's documented top-level fields.
- Separately, every KubeVirt/CDI kind rendered must be one the simulator serves, or the example
  could not run against it.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from statemachine.itinerary import Itinerary
from statemachine.plan import load_plan
from statemachine.providers import itinerary_for_plan
from statemachine.render import RenderedManifest, render_plan
from statemachine.sim.offline import seed_reads

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
META = "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
PVC_SPEC = "k8s.io.api.core.v1.PersistentVolumeClaimSpec"


def upstream_dir() -> Path:
    configured = os.environ.get("SMRUN_UPSTREAM")
    folder = Path(configured or "/work/shared/upstream")
    if not folder.is_dir() or not list(folder.glob("*swagger*.json")):
        if configured:
            pytest.fail(f"SMRUN_UPSTREAM={configured} has no swagger documents")
        pytest.skip(f"no upstream OpenAPI documents at {folder}")
    return folder


_CREATE = re.compile(r"^/apis/([^/]+)/([^/]+)/namespaces/\{[^}]*\}/([a-z0-9.-]+)$|^/apis/([^/]+)/([^/]+)/([a-z0-9.-]+)$")


class UpstreamValidator:
    """Strict Draft 4 validation against the definitions of the swagger documents in a folder."""

    def __init__(self, folder: Path) -> None:
        import jsonschema
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        self._schemas: dict[tuple[str, str], str] = {}   # (apiVersion, kind) -> $ref
        registry: Any = Registry()
        for index, path in enumerate(sorted(folder.glob("*swagger*.json"))):
            doc = json.loads(path.read_text(encoding="utf-8"))
            uri = f"urn:upstream-{index}"
            definitions = {name: _strict(d) for name, d in doc["definitions"].items()}
            for name in list(definitions):
                if name.endswith(("resource.Quantity", "intstr.IntOrString")):
                    definitions[name] = {"type": ["string", "number", "null"]}
                elif name.endswith((".Time", ".MicroTime")):
                    definitions[name] = {"type": ["string", "null"]}
            registry = registry.with_resource(uri, Resource.from_contents(
                {"definitions": definitions}, default_specification=DRAFT4))
            for route, ops in doc.get("paths", {}).items():
                match = _CREATE.match(route)
                body = next((p for p in ((ops or {}).get("post") or {}).get("parameters", [])
                             if p.get("in") == "body"), None) if match else None
                ref = (body or {}).get("schema", {}).get("$ref", "")
                if match and ref.startswith("#/definitions/"):
                    group, version = (match.group(1), match.group(2)) if match.group(1) else \
                        (match.group(4), match.group(5))
                    kind = ref.rsplit(".", 1)[-1]
                    self._schemas.setdefault((f"{group}/{version}", kind), f"{uri}{ref}")
            if path.name.startswith("kubevirt"):  # the document with core definitions
                self._meta = f"{uri}#/definitions/k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
                self._pvc_spec = f"{uri}#/definitions/k8s.io.api.core.v1.PersistentVolumeClaimSpec"
        self._registry = registry
        self._jsonschema = jsonschema

    def knows(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self._schemas

    def _problems(self, ref: str, value: Any) -> list[str]:
        validator = self._jsonschema.Draft4Validator({"$ref": ref}, registry=self._registry)
        return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in validator.iter_errors(value)]

    def object_problems(self, manifest: dict[str, Any]) -> list[str]:
        body = {k: v for k, v in manifest.items() if k != "status"}
        return self._problems(self._schemas[(manifest["apiVersion"], manifest["kind"])], body)

    def meta_problems(self, meta: Any) -> list[str]:
        return self._problems(self._meta, meta)

    def pvc_spec_problems(self, spec: Any) -> list[str]:
        return self._problems(self._pvc_spec, spec)


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]  # null means omitted, as the API server reads it
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def upstream() -> UpstreamValidator:
    folder = upstream_dir()
    validator = UpstreamValidator(folder)
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
    assert checked.get("kubevirt.io", 0) > 0, checked  # the test is not vacuous
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
