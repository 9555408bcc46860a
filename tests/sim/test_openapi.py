"""Admission validation against the upstream swagger files (``--openapi DIR``) and the OpenAPI
v3 stub kubectl needs."""
from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.dynamic import exceptions as dexc

from statemachine.sim.cluster import SimulatedClusters
from upstream import upstream_dir
from tests.conftest import run_kubectl

MakeSim = Callable[..., SimulatedClusters]
MERGE = "application/merge-patch+json"


def _vm(name: str, spec_extra: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {**spec_extra, "template": {"spec": {"domain": {
                "devices": {}, "resources": {"requests": {"memory": "1Gi"}}}}}}}


@pytest.fixture
def validating(make_sim: MakeSim) -> SimulatedClusters:
    return make_sim(openapi_dir=upstream_dir(), controllers=False)


def test_typo_in_vm_spec_is_422(validating: SimulatedClusters, dynamic_client: Any) -> None:
    vms = dynamic_client(validating).resources.get(api_version="kubevirt.io/v1",
                                                   kind="VirtualMachine")
    with pytest.raises(dexc.UnprocessibleEntityError) as err:
        vms.create(body=_vm("bad", {"runing": True}), namespace="default")
    status = json.loads(err.value.body)
    assert status["reason"] == "Invalid" and status["code"] == 422
    assert status["message"].startswith('VirtualMachine.kubevirt.io "bad" is invalid: spec')
    assert "'runing' was unexpected" in status["message"]
    assert validating.store("source").try_get("VirtualMachine", "default", "bad") is None


def test_valid_objects_pass_and_bad_patches_are_refused(validating: SimulatedClusters,
                                                        dynamic_client: Any) -> None:
    dyn = dynamic_client(validating)
    vms = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    created = vms.create(body=_vm("good", {"runStrategy": "Halted"}), namespace="default")
    assert created.spec.runStrategy == "Halted"
    with pytest.raises(dexc.UnprocessibleEntityError) as err:
        vms.patch(name="good", namespace="default", content_type=MERGE,
                  body={"spec": {"running": "yes"}})
    assert "spec.running" in json.loads(err.value.body)["message"]
    assert validating.store("source").get("VirtualMachine", "default", "good")["spec"][
        "runStrategy"] == "Halted"
    # status writes and kinds without a definition are not validated
    vms.status.patch(name="good", namespace="default", content_type=MERGE,
                     body={"status": {"printableStatus": "Stopped", "simOnly": 1}})
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    assert cms.create(body={"metadata": {"name": "x"}, "anything": 1},
                      namespace="default").metadata.name == "x"


def test_kubectl_apply_reports_the_422(validating: SimulatedClusters, tmp_path: Path) -> None:
    manifest = tmp_path / "vm.yaml"
    manifest.write_text(json.dumps(_vm("typo", {"runing": True})))
    proc = run_kubectl(validating, tmp_path / "cache", "apply", "-f", str(manifest),
                       check=False)
    assert proc.returncode != 0
    assert 'The VirtualMachine "typo" is invalid' in proc.stderr
    assert "'runing' was unexpected" in proc.stderr


def test_openapi_v3_stub(make_sim: MakeSim) -> None:
    sim = make_sim(controllers=False)
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))

    def get(path: str) -> Any:
        req = urllib.request.Request(sim.url("source") + path, headers={
            "Authorization": f"Bearer {sim.token('source')}"})
        with urllib.request.urlopen(req, context=ctx) as resp:
            return json.load(resp)

    root = get("/openapi/v3")
    url = root["paths"]["apis/kubevirt.io/v1"]["serverRelativeURL"]
    doc = get(url)
    op = doc["paths"]["/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "kubevirt.io", "version": "v1",
                                                     "kind": "VirtualMachine"}
    assert "fieldValidation" in [p["name"] for p in op["parameters"]]
    assert "api/v1" in root["paths"]
