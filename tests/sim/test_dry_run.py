"""``dryRun=All`` as kube-apiserver runs it, through real clients (the ``kubernetes`` client and
kubectl): the whole write runs (schema validation and defaulting, admission webhooks) and the
answer is the would-be object, but nothing is stored, no watch event or Event is made and the
resourceVersion does not move; any value other than ``All`` is refused with the options' 422
(issue 15 item 6, apiserver-fidelity.md)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.store import StoreEvent
from tests.sim.refusals import refused

NS = "default"


def _vmi(name: str) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"domain": {"devices": {}, "memory": {"guest": "1Gi"}}}}


def _configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS},
            "data": data}


class _Recorder:
    """Every store event of one cluster while a test runs (watch events come from these)."""

    def __init__(self, sim: SimulatedClusters, cluster: str = "source") -> None:
        self.events: list[StoreEvent] = []
        self.store = sim.store(cluster)
        self.rv = self.store.resource_version
        self.events_before = len(self.store.list("Event"))
        self.stop = self.store.subscribe(self.events.append)

    def assert_untouched(self) -> None:
        assert self.events == []
        assert self.store.resource_version == self.rv
        assert len(self.store.list("Event")) == self.events_before


def test_dry_run_create_admits_and_defaults_but_stores_nothing(
        quiet: SimulatedClusters, dynamic_client: Callable[..., Any]) -> None:
    dyn = dynamic_client(quiet)
    vmis = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachineInstance")
    seen = _Recorder(quiet)
    out = vmis.create(body=_vmi("dry"), namespace=NS, dry_run="All").to_dict()
    seen.assert_untouched()
    # The would-be object: the mutating webhook ran, server fields are set...
    assert "kubevirt.io/foregroundDeleteVirtualMachine" in out["metadata"]["finalizers"]
    assert out["metadata"]["uid"] and out["metadata"]["creationTimestamp"]
    assert out["metadata"]["managedFields"][0]["operation"] == "Update"
    # ...but no resourceVersion of its own (upstream's dry-run storage returns the prepared object).
    assert "resourceVersion" not in out["metadata"]
    assert quiet.store("source").try_get("VirtualMachineInstance", NS, "dry") is None
    # A watch from before the dry run sees nothing either.
    events = list(dyn.watch(vmis, namespace=NS, resource_version=str(seen.rv), timeout=1))
    assert events == []
    seen.stop()


def test_dry_run_runs_validation_and_webhooks_with_the_real_messages(
        quiet: SimulatedClusters, dynamic_client: Callable[..., Any]) -> None:
    dyn = dynamic_client(quiet)
    vms = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    bad = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
           "metadata": {"name": "bad", "namespace": NS},
           "spec": {"runStrategy": "Always", "running": True,
                    "template": {"spec": {"domain": {"devices": {}}}}}}
    real = refused(lambda: vms.create(body=bad, namespace=NS))
    dry = refused(lambda: vms.create(body=bad, namespace=NS, dry_run="All"))
    assert dry == real and "denied the request" in dry["message"]
    schema = dict(bad, spec={"runStrategy": 7, "template": {"spec": {"domain": {"devices": {}}}}})
    real = refused(lambda: vms.create(body=schema, namespace=NS))
    dry = refused(lambda: vms.create(body=schema, namespace=NS, dry_run="All"))
    assert dry == real and dry["code"] == 422 and dry["reason"] == "Invalid"


def test_dry_run_create_of_an_existing_object_is_409(
        quiet: SimulatedClusters, dynamic_client: Callable[..., Any]) -> None:
    cms = dynamic_client(quiet).resources.get(api_version="v1", kind="ConfigMap")
    cms.create(body=_configmap("here", a="1"), namespace=NS)
    body = refused(lambda: cms.create(body=_configmap("here"), namespace=NS, dry_run="All"))
    assert body["code"] == 409 and body["reason"] == "AlreadyExists"


def test_dry_run_patch_apply_and_delete_change_nothing(
        quiet: SimulatedClusters, dynamic_client: Callable[..., Any]) -> None:
    cms = dynamic_client(quiet).resources.get(api_version="v1", kind="ConfigMap")
    stored = cms.create(body=_configmap("cm", a="1"), namespace=NS).to_dict()
    rv = stored["metadata"]["resourceVersion"]
    seen = _Recorder(quiet)
    patched = cms.patch(name="cm", namespace=NS, body={"data": {"a": "2"}}, dry_run="All",
                        content_type="application/merge-patch+json").to_dict()
    assert patched["data"] == {"a": "2"} and patched["metadata"]["resourceVersion"] == rv
    applied = cms.server_side_apply(body=_configmap("cm", b="3"), name="cm", namespace=NS,
                                    field_manager="smrun", dry_run="All").to_dict()
    assert applied["data"] == {"a": "1", "b": "3"}
    assert any(m["manager"] == "smrun" for m in applied["metadata"]["managedFields"])
    created = cms.server_side_apply(body=_configmap("new", c="4"), name="new", namespace=NS,
                                    field_manager="smrun", dry_run="All").to_dict()
    assert created["data"] == {"c": "4"} and "resourceVersion" not in created["metadata"]
    cms.delete(name="cm", namespace=NS, body={"dryRun": ["All"]})
    cms.delete(name="cm", namespace=NS, dry_run="All")
    seen.assert_untouched()
    seen.stop()
    assert quiet.store("source").get("ConfigMap", NS, "cm")["data"] == {"a": "1"}
    assert quiet.store("source").try_get("ConfigMap", NS, "new") is None


@pytest.mark.parametrize("verb,options", [("create", "CreateOptions"), ("replace", "UpdateOptions"),
                                          ("patch", "PatchOptions"), ("delete", "DeleteOptions")])
def test_an_unsupported_dry_run_value_is_refused_before_the_write(
        quiet: SimulatedClusters, dynamic_client: Callable[..., Any], verb: str,
        options: str) -> None:
    cms = dynamic_client(quiet).resources.get(api_version="v1", kind="ConfigMap")
    cms.create(body=_configmap("cm", a="1"), namespace=NS)
    seen = _Recorder(quiet)
    calls: dict[str, Callable[[], Any]] = {
        "create": lambda: cms.create(body=_configmap("x"), namespace=NS, dry_run="Everything"),
        "replace": lambda: cms.replace(body=_configmap("cm", a="2"), namespace=NS,
                                       dry_run="Everything"),
        "patch": lambda: cms.patch(name="cm", namespace=NS, body={"data": {"a": "2"}},
                                   content_type="application/merge-patch+json",
                                   dry_run="Everything"),
        "delete": lambda: cms.delete(name="cm", namespace=NS, dry_run="Everything")}
    body = refused(calls[verb])
    cause = 'Unsupported value: []string{"Everything"}: supported values: "All"'
    assert body["code"] == 422 and body["reason"] == "Invalid"
    assert body["message"] == f'{options}.meta.k8s.io "" is invalid: dryRun: {cause}'
    assert body["details"]["kind"] == options and body["details"]["group"] == "meta.k8s.io"
    assert body["details"]["causes"] == [
        {"reason": "FieldValueNotSupported", "message": cause, "field": "dryRun"}]
    seen.assert_untouched()
    seen.stop()


def test_every_dry_run_value_counts(quiet: SimulatedClusters) -> None:
    from tests.sim.test_protocol import Raw

    raw = Raw(quiet)
    status, body = raw.call("POST", "/api/v1/namespaces/default/configmaps?dryRun=All&dryRun=x",
                            _configmap("two"))
    assert status == 422
    assert 'Unsupported value: []string{"All", "x"}' in body["message"]
    status, body = raw.call("POST", "/api/v1/namespaces/default/configmaps?dryRun=All&dryRun=All",
                            _configmap("two"))
    assert status == 201
    status, body = raw.call("DELETE", "/api/v1/namespaces/default/configmaps/two",
                            {"dryRun": ["Nope"]})
    assert status == 422 and body["details"]["kind"] == "DeleteOptions"
    assert quiet.store("source").try_get("ConfigMap", NS, "two") is None


def test_kubectl_server_dry_run_stores_nothing(kubectl: Callable[..., Any],
                                               sim: SimulatedClusters) -> None:
    out = kubectl("create", "configmap", "k", "--from-literal=a=1", "--dry-run=server",
                  "-o", "json")
    obj = json.loads(out.stdout)
    assert obj["data"] == {"a": "1"} and obj["metadata"]["uid"]
    assert "resourceVersion" not in obj["metadata"]
    assert sim.store("source").try_get("ConfigMap", NS, "k") is None


def test_kubectl_diff_and_server_side_apply_dry_run(kubectl: Callable[..., Any],
                                                    sim: SimulatedClusters,
                                                    tmp_path: Any) -> None:
    """kubectl diff asks the server for a dry-run apply of each object: it must see the change
    and the cluster must not."""
    import shutil
    if shutil.which("diff") is None:
        pytest.skip("kubectl diff needs a diff program")
    kubectl("create", "configmap", "d", "--from-literal=a=1")
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d, namespace: default}\n"
                        "data: {a: '2'}\n---\napiVersion: v1\nkind: ConfigMap\n"
                        "metadata: {name: e, namespace: default}\ndata: {b: '3'}\n")
    seen = _Recorder(sim)
    for how in ([], ["--server-side", "--force-conflicts"]):
        out = kubectl("diff", *how, "-f", str(manifest), check=False)
        assert out.returncode == 1, out.stderr
        assert "-  a: \"1\"\n+  a: \"2\"" in out.stdout and "+  b: \"3\"" in out.stdout
    # Without --force-conflicts, the field kubectl-create owns is an apply conflict, as on a
    # real cluster (kubectl retries, then reports it).
    out = kubectl("diff", "--server-side", "-f", str(manifest), check=False)
    assert out.returncode > 1 and "Apply failed with 1 conflict" in out.stderr
    out = kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f",
                  str(manifest))
    assert "serverside-applied (server dry run)" in out.stdout
    seen.assert_untouched()
    seen.stop()
    assert sim.store("source").get("ConfigMap", NS, "d")["data"] == {"a": "1"}
    assert sim.store("source").try_get("ConfigMap", NS, "e") is None
