"""Schema admission of KubeVirt/CDI objects by default (no flag): pruning, strict field
validation, 422 with causes; through kubectl, the ``kubernetes`` DynamicClient and lightkube."""
from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.dynamic import exceptions as dexc

from statemachine.sim.cluster import SimulatedClusters

MakeSim = Callable[..., SimulatedClusters]
MERGE = "application/merge-patch+json"


def _vm(name: str, spec_extra: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {**spec_extra, "template": {"spec": {"domain": {
                "devices": {}, "resources": {"requests": {"memory": "1Gi"}}}}}}}


@pytest.fixture
def quiet(make_sim: MakeSim) -> SimulatedClusters:
    return make_sim(controllers=False)


def _raw(sim: SimulatedClusters, method: str, path: str,
         body: Any = None) -> tuple[int, dict[str, Any], Any]:
    import ssl
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    req = urllib.request.Request(sim.url("source") + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {sim.token('source')}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx) as resp:
            return resp.status, dict(resp.headers.items()), json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), json.load(err)


def test_kubectl_strict_field_validation_names_the_field(quiet: SimulatedClusters,
                                                         tmp_path: Path) -> None:
    from tests.conftest import run_kubectl
    manifest = tmp_path / "vm.yaml"
    manifest.write_text(json.dumps(_vm("typo", {"runing": True})))
    proc = run_kubectl(quiet, tmp_path / "cache", "apply", "-f", str(manifest), check=False)
    assert proc.returncode != 0
    assert ('VirtualMachine in version "v1" cannot be handled as a VirtualMachine: strict '
            'decoding error: unknown field "spec.runing"') in proc.stderr
    assert "Error from server (BadRequest)" in proc.stderr
    assert quiet.store("source").try_get("VirtualMachine", "default", "typo") is None


def test_kubectl_reports_the_422_with_its_cause(quiet: SimulatedClusters, tmp_path: Path) -> None:
    from tests.conftest import run_kubectl
    manifest = tmp_path / "vm.yaml"
    manifest.write_text(json.dumps(_vm("wrongtype", {"running": "yes"})))
    proc = run_kubectl(quiet, tmp_path / "cache", "apply", "-f", str(manifest), check=False)
    assert proc.returncode != 0
    assert ('The VirtualMachine "wrongtype" is invalid: spec.running: Invalid value: "string": '
            'spec.running in body must be of type boolean: "string"') in proc.stderr


def test_default_field_validation_prunes_with_a_warning(quiet: SimulatedClusters) -> None:
    vm = _vm("pruned", {"runStrategy": "Halted", "runing": True})
    vm["metadata"]["colour"] = "red"
    code, headers, body = _raw(quiet, "POST", "/apis/kubevirt.io/v1/namespaces/default/"
                                              "virtualmachines", vm)
    assert code == 201
    assert "runing" not in body["spec"] and "colour" not in body["metadata"]
    warnings = [v for k, v in headers.items() if k.lower() == "warning"]
    assert any('unknown field \\"spec.runing\\"' in w for w in warnings), headers
    stored = quiet.store("source").get("VirtualMachine", "default", "pruned")
    assert "runing" not in stored["spec"]
    # fieldValidation=Ignore: dropped silently; an unknown mode is a 400
    code, headers, _ = _raw(quiet, "POST", "/apis/kubevirt.io/v1/namespaces/default/"
                            "virtualmachines?fieldValidation=Ignore", _vm("quiet", {"x": 1, "runStrategy": "Halted"}))
    assert code == 201 and not [k for k in headers if k.lower() == "warning"]
    code, _, status = _raw(quiet, "POST", "/apis/kubevirt.io/v1/namespaces/default/"
                           "virtualmachines?fieldValidation=Loud", _vm("loud", {}))
    assert code == 400 and status["reason"] == "BadRequest"


def test_dynamic_client_gets_422_with_causes_and_no_flag(quiet: SimulatedClusters,
                                                         dynamic_client: Any) -> None:
    vms = dynamic_client(quiet).resources.get(api_version="kubevirt.io/v1",
                                              kind="VirtualMachine")
    with pytest.raises(dexc.UnprocessibleEntityError) as err:
        vms.create(body=_vm("bad", {"running": "yes", "runStrategy": 3}), namespace="default")
    status = json.loads(err.value.body)
    assert status["code"] == 422 and status["reason"] == "Invalid"
    assert status["message"].startswith('VirtualMachine.kubevirt.io "bad" is invalid: [')
    causes = {c["field"]: c for c in status["details"]["causes"]}
    assert causes["spec.running"]["reason"] == "FieldValueTypeInvalid"
    assert causes["spec.runStrategy"]["message"] == (
        'Invalid value: "integer": spec.runStrategy in body must be of type string: "integer"')
    assert status["details"]["kind"] == "VirtualMachine"
    created = vms.create(body=_vm("good", {"runStrategy": "Halted"}), namespace="default")
    with pytest.raises(dexc.UnprocessibleEntityError):
        vms.patch(name="good", namespace="default", content_type=MERGE,
                  body={"spec": {"template": {"spec": {"domain": {"resources": {
                      "requests": {"memory": "1Gb"}}}}}}})
    assert quiet.store("source").get("VirtualMachine", "default", "good")["metadata"][
        "resourceVersion"] == created.metadata.resourceVersion
    # status writes are checked against the status schema only; core kinds have no schema here
    vms.status.patch(name="good", namespace="default", content_type=MERGE,
                     body={"status": {"printableStatus": "Stopped", "simOnly": 1}})
    status_now = quiet.store("source").get("VirtualMachine", "default", "good")["status"]
    assert status_now == {"printableStatus": "Stopped"}


def test_required_fields_and_datavolumes(quiet: SimulatedClusters, dynamic_client: Any) -> None:
    dvs = dynamic_client(quiet).resources.get(api_version="cdi.kubevirt.io/v1beta1",
                                              kind="DataVolume")
    with pytest.raises(dexc.UnprocessibleEntityError) as err:
        dvs.create(body={"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                         "metadata": {"name": "d"}}, namespace="default")
    status = json.loads(err.value.body)
    assert status["message"] == 'DataVolume.cdi.kubevirt.io "d" is invalid: spec: Required value'
    assert status["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec"}]


def test_lightkube_sees_the_422(quiet: SimulatedClusters) -> None:
    from lightkube import ApiError, Client, KubeConfig
    from lightkube.generic_resource import create_namespaced_resource

    config = KubeConfig.from_file(str(quiet.kubeconfig_path)).get(context_name="source")
    client = Client(config=config, field_manager="test")
    VM = create_namespaced_resource("kubevirt.io", "v1", "VirtualMachine", "virtualmachines")
    with pytest.raises(ApiError) as err:
        client.create(VM.from_dict(_vm("lk", {"running": "yes"})), namespace="default")
    assert err.value.status.code == 422 and err.value.status.reason == "Invalid"
    made = client.create(VM.from_dict(_vm("lk", {"runStrategy": "Halted", "extra": 1})),
                         namespace="default")
    # The unknown field pruned; the VM mutator's defaults added (test_kubevirt_admission).
    firmware = made.spec["template"]["spec"]["domain"].pop("firmware")
    assert set(firmware) == {"uuid", "serial"}
    assert made.spec == {"runStrategy": "Halted", "template": {"spec": {
        "architecture": "amd64", "domain": {"devices": {}, "machine": {"type": "q35"},
                                            "resources": {"requests": {"memory": "1Gi"}}}}}}


def test_controllers_are_not_admitted(quiet: SimulatedClusters) -> None:
    # Controllers write to the store directly, as KubeVirt's own controllers own their objects.
    store = quiet.store("source")
    store.create("VirtualMachine", _vm("ctl", {"runing": True}))
    assert store.get("VirtualMachine", "default", "ctl")["spec"]["runing"] is True


def test_unchanged_fields_are_not_checked_again(quiet: SimulatedClusters,
                                                dynamic_client: Any) -> None:
    # A VM stored with an invalid spec (seeded, or written by a controller) can still be
    # labelled: the update leaves spec as it was (upstream ratchets unchanged fields). A change
    # to spec is checked in full.
    store = quiet.store("source")
    store.create("VirtualMachine", _vm("old", {"running": "yes"}))
    vms = dynamic_client(quiet).resources.get(api_version="kubevirt.io/v1",
                                              kind="VirtualMachine")
    labelled = vms.patch(name="old", namespace="default", content_type=MERGE,
                         body={"metadata": {"labels": {"team": "a"}}})
    assert labelled.metadata.labels.team == "a"
    with pytest.raises(dexc.UnprocessibleEntityError) as err:
        vms.patch(name="old", namespace="default", content_type=MERGE,
                  body={"spec": {"runStrategy": "Halted"}})
    assert "spec.running" in json.loads(err.value.body)["message"]
