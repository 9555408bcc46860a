"""Object validation as kube-apiserver does it (apiserver-fidelity.md §1, §7), through kubectl, the
``kubernetes`` client and lightkube: names per kind, labels and annotations, immutable fields,
``generation`` only where the kind has one, JSON patches that remove required metadata, delete
preconditions and field selectors per kind. Each rule is checked with its status code, reason
and exact message."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from lightkube import Client as LightClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Secret

from statemachine.sim.cluster import SimulatedClusters
from tests.sim.conftest import Kubectl
from tests.sim.refusals import refused, status_of

MakeSim = Callable[..., SimulatedClusters]

SUBDOMAIN = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
             "'-' or '.', and must start and end with an alphanumeric character (e.g. "
             "'example.com', regex used for validation is "
             r"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
         "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
         "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035 = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
           "with an alphabetic character, and end with an alphanumeric character (e.g. "
           "'my-name',  or 'abc-123', regex used for validation is "
           "'[a-z]([-a-z0-9]*[a-z0-9])?')")
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, "
               "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
               "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
               "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
QNAME = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
         "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
         "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


VM_SPEC = {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}


def _cm(name: str = "", **meta: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, **meta} if name else dict(meta)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": {"k": "v"}}


def _apply(kube: Kubectl, doc: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return kube("apply", "-f", "-", *args, input=json.dumps(doc), check=False)


# ------------------------------------------------------------------------------------ names
def test_names_follow_the_rule_of_their_kind(core: client.CoreV1Api) -> None:
    body = refused(lambda: core.create_namespaced_config_map("default", _cm("Bad_Name")))
    assert body["reason"] == "Invalid" and body["code"] == 422
    assert body["message"] == (f'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: '
                               f'"Bad_Name": {SUBDOMAIN}')
    assert body["details"] == {"name": "Bad_Name", "kind": "ConfigMap", "causes": [
        {"reason": "FieldValueInvalid", "message": f'Invalid value: "Bad_Name": {SUBDOMAIN}',
         "field": "metadata.name"}]}
    # A path-like name is no subdomain either; too long gets both messages, aggregated.
    body = refused(lambda: core.create_namespaced_config_map("default", _cm("../x")))
    assert body["message"].endswith(f'metadata.name: Invalid value: "../x": {SUBDOMAIN}')
    long = "A" * 254
    body = refused(lambda: core.create_namespaced_config_map("default", _cm(long)))
    assert body["message"] == (
        f'ConfigMap "{long}" is invalid: [metadata.name: Invalid value: "{long}": must be no '
        f'more than 253 characters, metadata.name: Invalid value: "{long}": {SUBDOMAIN}]')
    # Namespaces are DNS-1123 labels (no dots), Services DNS-1035 labels (no leading digit).
    body = refused(lambda: core.create_namespace({"metadata": {"name": "a.b"}}))
    assert body["message"] == f'Namespace "a.b" is invalid: metadata.name: Invalid value: "a.b": {LABEL}'
    body = refused(lambda: core.create_namespaced_service(
        "default", {"metadata": {"name": "1abc"}, "spec": {"ports": [{"port": 80}]}}))
    assert body["message"] == (f'Service "1abc" is invalid: metadata.name: Invalid value: '
                               f'"1abc": {DNS1035}')
    body = refused(lambda: core.create_namespaced_config_map("default", {"metadata": {}}))
    assert body["message"] == ('ConfigMap "" is invalid: metadata.name: Required value: name or '
                               'generateName is required')
    assert body["details"]["causes"][0]["reason"] == "FieldValueRequired"


def test_generate_name_and_rbac_path_segment_names(quiet: SimulatedClusters,
                                                   core: client.CoreV1Api,
                                                   dynamic_client: Any) -> None:
    made = core.create_namespaced_config_map("default", _cm(generate_name="web-")).metadata.name
    assert made.startswith("web-") and len(made) == 9
    assert set(made[4:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    # The prefix is cut so the generated name stays within 63 characters.
    long = core.create_namespaced_config_map("default", _cm(generate_name="p" * 70)).metadata.name
    assert len(long) == 63
    body = refused(lambda: core.create_namespaced_config_map("default",
                                                             _cm(generate_name="Web-")))
    assert body["message"] == (f'ConfigMap "Web-" is invalid: metadata.generateName: Invalid '
                               f'value: "Web-": {SUBDOMAIN}')
    roles = dynamic_client(quiet).resources.get(api_version="rbac.authorization.k8s.io/v1",
                                                kind="Role")
    ok = roles.create(namespace="default", body={"metadata": {"name": "system:Reader"},
                                                 "rules": []})
    assert ok.metadata.name == "system:Reader"  # RBAC names are path segments, not DNS names
    with pytest.raises(ApiException) as err:
        roles.create(namespace="default", body={"metadata": {"name": "a/b"}, "rules": []})
    assert status_of(err.value)["message"] == (
        'Role.rbac.authorization.k8s.io "a/b" is invalid: metadata.name: Invalid value: "a/b": '
        "may not contain '/'")


def test_names_on_the_url_must_be_path_segments(quiet: SimulatedClusters) -> None:
    from tests.sim.test_protocol import Raw
    code, body = Raw(quiet).call("GET", "/api/v1/namespaces/default/configmaps/a%25b")
    assert (code, body["reason"]) == (400, "BadRequest")
    assert body["message"] == 'Name parameter invalid: "a%b": may not contain \'%\''


# ------------------------------------------------------------------------------------ labels
def test_label_and_annotation_rules(light: LightClient) -> None:
    with pytest.raises(ApiError) as err:
        light.create(ConfigMap(metadata=ObjectMeta(name="l", labels={"app": "x" * 64})))
    status = err.value.status
    assert (status.code, status.reason) == (422, "Invalid")
    assert status.message == ('ConfigMap "l" is invalid: metadata.labels: Invalid value: '
                              f'"{"x" * 64}": must be no more than 63 characters')
    with pytest.raises(ApiError) as err:
        light.create(ConfigMap(metadata=ObjectMeta(name="l", labels={"a/b/c": "v", "k": "-v"})))
    assert err.value.status.message == (
        'ConfigMap "l" is invalid: [metadata.labels: Invalid value: "a/b/c": a qualified name '
        f"{QNAME} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName'), "
        f'metadata.labels: Invalid value: "-v": {LABEL_VALUE}]')
    with pytest.raises(ApiError) as err:
        light.create(ConfigMap(metadata=ObjectMeta(name="l", labels={"/x": "v"})))
    assert err.value.status.message.endswith('Invalid value: "/x": prefix part must be non-empty')
    assert err.value.status.details.causes[0].field == "metadata.labels"
    # Annotation keys are checked lower-cased; values are free, but their total size is bounded.
    light.create(ConfigMap(metadata=ObjectMeta(name="ok", annotations={"Example.COM/Note": "!"})))
    with pytest.raises(ApiError) as err:
        light.create(ConfigMap(metadata=ObjectMeta(name="big", annotations={"a": "x" * 262144})))
    assert err.value.status.message == ('ConfigMap "big" is invalid: metadata.annotations: Too '
                                        'long: may not be more than 262144 bytes')
    assert err.value.status.details.causes[0].reason == "FieldValueTooLong"
    with pytest.raises(ApiError) as err:
        light.create(ConfigMap(metadata=ObjectMeta(name="f", finalizers=["orphan",
                                                                         "foregroundDeletion"])))
    assert err.value.status.message == (
        'ConfigMap "f" is invalid: metadata.finalizers: Invalid value: []string{"orphan", '
        '"foregroundDeletion"}: finalizer orphan and foregroundDeletion cannot be both set')
    with pytest.raises(ApiError) as err:
        light.create(ConfigMap(metadata=ObjectMeta(name="d"), data={"a b": "v"}))
    assert err.value.status.message == (
        'ConfigMap "d" is invalid: data[a b]: Invalid value: "a b": a valid config key must '
        "consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',"
        "  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")


def test_kubectl_shows_invalid_labels(kube: Kubectl) -> None:
    proc = _apply(kube, _cm("c", labels={"app": "x" * 64}))
    assert proc.returncode != 0
    assert ('The ConfigMap "c" is invalid: metadata.labels: Invalid value: '
            f'"{"x" * 64}": must be no more than 63 characters') in proc.stderr
    # Updates are validated too.
    _apply(kube, _cm("c")).check_returncode()
    proc = kube("label", "configmap", "c", "bad key=v", check=False)
    assert proc.returncode != 0
    proc = kube("annotate", "configmap", "c", "a/b/c=v", check=False)
    assert ('The ConfigMap "c" is invalid: metadata.annotations: Invalid value: "a/b/c": a '
            f"qualified name {QNAME} with an optional DNS subdomain prefix and '/' (e.g. "
            "'example.com/MyName')") in proc.stderr


# ------------------------------------------------------------------------------------ updates
def test_immutable_configmap_and_secret(kube: Kubectl, light: LightClient) -> None:
    light.create(ConfigMap(metadata=ObjectMeta(name="frozen"), data={"a": "1"}, immutable=True))
    proc = kube("patch", "configmap", "frozen", "--type=merge", "-p", '{"data":{"a":"2"}}',
                check=False)
    assert proc.returncode != 0
    assert ('The ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when '
            '`immutable` is set') in proc.stderr
    proc = kube("patch", "configmap", "frozen", "--type=merge", "-p", '{"immutable":false}',
                check=False)
    assert "immutable: Forbidden: field is immutable when `immutable` is set" in proc.stderr
    kube("label", "configmap", "frozen", "team=a")  # metadata stays writable
    light.create(Secret(metadata=ObjectMeta(name="s"), type="Opaque", data={"k": "dg=="}))
    with pytest.raises(ApiError) as err:
        light.patch(Secret, "s", {"type": "kubernetes.io/tls"}, patch_type=_merge())
    # ValidateSecretUpdate runs ValidateSecret on the new object too: the tls keys are missing.
    assert err.value.status.message == ('Secret "s" is invalid: [type: Invalid value: '
                                        '"kubernetes.io/tls": field is immutable, data[tls.crt]: '
                                        'Required value, data[tls.key]: Required value]')


def _merge() -> Any:
    from lightkube.types import PatchType
    return PatchType.MERGE


def test_job_template_and_pvc_spec_are_immutable(quiet: SimulatedClusters,
                                                 dynamic_client: Any) -> None:
    dyn = dynamic_client(quiet)
    jobs = dyn.resources.get(api_version="batch/v1", kind="Job")
    job = jobs.create(namespace="default", body={
        "metadata": {"name": "j"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
    assert job.metadata.generation == 1
    with pytest.raises(ApiException) as err:
        jobs.patch(namespace="default", name="j", content_type="application/merge-patch+json",
                   body={"spec": {"template": {"spec": {"containers": [
                       {"name": "c", "image": "alpine"}]}}}})
    body = status_of(err.value)
    assert body["message"] == ('Job.batch "j" is invalid: spec.template: Invalid value: '
                               'core.PodTemplateSpec{...}: field is immutable')
    assert body["details"]["causes"][0]["field"] == "spec.template"
    jobs.patch(namespace="default", name="j", content_type="application/merge-patch+json",
               body={"spec": {"parallelism": 2}})  # mutable fields still change
    pvcs = dyn.resources.get(api_version="v1", kind="PersistentVolumeClaim")
    pvcs.create(namespace="default", body={"metadata": {"name": "p"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    with pytest.raises(ApiException) as err:
        pvcs.patch(namespace="default", name="p", content_type="application/merge-patch+json",
                   body={"spec": {"accessModes": ["ReadWriteMany"]}})
    body = status_of(err.value)
    assert body["message"].startswith(
        'PersistentVolumeClaim "p" is invalid: spec: Forbidden: spec is immutable after '
        "creation except resources.requests and volumeAttributesClassName for bound claims")
    # A bound claim may grow, never shrink.
    quiet.store("source").update_status("PersistentVolumeClaim", "default", "p",
                                        {"phase": "Bound"})
    grown = pvcs.patch(namespace="default", name="p",
                       content_type="application/merge-patch+json",
                       body={"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    assert grown.spec.resources.requests.storage == "2Gi"
    with pytest.raises(ApiException) as err:
        pvcs.patch(namespace="default", name="p", content_type="application/merge-patch+json",
                   body={"spec": {"resources": {"requests": {"storage": "1Gi"}}}})
    assert status_of(err.value)["message"] == (
        'PersistentVolumeClaim "p" is invalid: spec.resources.requests.storage: Forbidden: '
        "field can not be less than previous value")


def test_uid_is_immutable(core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", _cm("u"))
    uid = cm.metadata.uid
    body = refused(lambda: core.patch_namespaced_config_map(
        "u", "default", {"metadata": {"uid": "0000"}}))
    assert body["message"] == ('ConfigMap "u" is invalid: metadata.uid: Invalid value: "0000": '
                               "field is immutable")
    # On PUT the body's uid is a precondition, checked by the storage layer: 409.
    cm.metadata.uid = "0000"
    body = refused(lambda: core.replace_namespaced_config_map("u", "default", cm))
    assert (body["code"], body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "u": StorageError: invalid object, Code: 4, '
        "Key: /registry/configmaps/default/u, ResourceVersion: 0, AdditionalErrorMsg: "
        f"Precondition failed: UID in precondition: 0000, UID in object meta: {uid}")
    # creationTimestamp is silently kept, as upstream's BeforeUpdate does.
    cm.metadata.uid = None
    cm.metadata.creation_timestamp = None
    assert core.replace_namespaced_config_map("u", "default", cm).metadata.uid == uid


def test_generation_only_on_kinds_that_have_it(quiet: SimulatedClusters,
                                               core: client.CoreV1Api,
                                               dynamic_client: Any) -> None:
    cm = core.create_namespaced_config_map("default", _cm("g"))
    assert cm.metadata.generation is None
    cm = core.patch_namespaced_config_map("g", "default", {"data": {"k": "w"}})
    assert cm.metadata.generation is None
    ns = core.create_namespace({"metadata": {"name": "gen"}})
    assert ns.metadata.generation is None
    assert ns.spec.finalizers == ["kubernetes"] and ns.status.phase == "Active"
    vms = dynamic_client(quiet).resources.get(api_version="kubevirt.io/v1",
                                              kind="VirtualMachine")
    vm = vms.create(namespace="default", body={"metadata": {"name": "vm"},
                                               "spec": VM_SPEC})
    assert vm.metadata.generation == 1


def test_json_patch_cannot_remove_required_metadata(quiet: SimulatedClusters,
                                                    core: client.CoreV1Api,
                                                    dynamic_client: Any) -> None:
    core.create_namespaced_config_map("default", _cm("j"))
    cms = dynamic_client(quiet).resources.get(api_version="v1", kind="ConfigMap")
    for path in ("/metadata/name", "/metadata"):
        body = refused(lambda: cms.patch(name="j", namespace="default",
                                          body=[{"op": "remove", "path": path}],
                                          content_type="application/json-patch+json"))
        assert (body["code"], body["reason"]) == (400, "BadRequest")
        assert body["message"] == "the name of the object () does not match the name on the URL (j)"
    body = refused(lambda: core.patch_namespaced_config_map(
        "j", "default", {"metadata": {"name": "other"}}))
    assert body["message"] == ("the name of the object (other) does not match the name on the "
                               "URL (j)")
    assert core.read_namespaced_config_map("j", "default").metadata.name == "j"


# ------------------------------------------------------------------------------------ deletes
def test_delete_preconditions(core: client.CoreV1Api, light: LightClient) -> None:
    cm = core.create_namespaced_config_map("default", _cm("p"))
    body = refused(lambda: core.delete_namespaced_config_map(
        "p", "default", body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="not-it"))))
    assert (body["code"], body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on configmaps "p": StorageError: invalid object, Code: 4, '
        "Key: /registry/configmaps/default/p, ResourceVersion: 0, AdditionalErrorMsg: "
        f"Precondition failed: UID in precondition: not-it, UID in object meta: {cm.metadata.uid}")
    body = refused(lambda: core.delete_namespaced_config_map(
        "p", "default", body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version="1"))))
    assert body["message"].endswith(
        "Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object "
        f"meta: {cm.metadata.resource_version}")
    core.delete_namespaced_config_map("p", "default", body=client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=cm.metadata.uid,
                                             resource_version=cm.metadata.resource_version)))
    with pytest.raises(ApiError) as err:
        light.get(ConfigMap, "p")
    assert err.value.status.code == 404


# ------------------------------------------------------------------------------------ selectors
def test_field_selectors_per_kind(kube: Kubectl, light: LightClient,
                                  core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", _cm("one"))
    proc = kube("get", "configmaps", "--field-selector", "data.k=v", check=False)
    assert proc.returncode != 0
    assert ('Error from server (BadRequest): Unable to find "/v1, Resource=configmaps" that '
            'match label selector "", field selector "data.k=v": "data.k" is not a known field '
            'selector: only "metadata.name", "metadata.namespace"') in proc.stderr
    assert "one" in kube("get", "configmaps", "--field-selector", "metadata.name=one").stdout
    proc = kube("get", "vm", "--field-selector", "status.printableStatus=Running", check=False)
    assert "field label not supported: status.printableStatus" in proc.stderr
    proc = kube("get", "jobs", "--field-selector", "spec.parallelism=1", check=False)
    assert 'field label "spec.parallelism" not supported for batchv1.Job' in proc.stderr
    proc = kube("get", "namespaces", "--field-selector", "metadata.namespace=x", check=False)
    assert "field label not supported: metadata.namespace" in proc.stderr
    assert "default" in kube("get", "namespaces", "--field-selector", "status.phase=Active").stdout
    proc = kube("get", "pods", "--field-selector", "spec.nodeName", check=False)
    assert ("invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"
            in proc.stderr)
    # Pods: the conversion function's labels, with spec.host the legacy name of spec.nodeName.
    light.create(Pod.from_dict({"metadata": {"name": "p1"}, "spec": {
        "nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}))
    light.create(Pod.from_dict({"metadata": {"name": "p2"}, "spec": {
        "containers": [{"name": "c", "image": "i"}]}}))
    assert [p.metadata.name for p in light.list(Pod, fields={"spec.host": "n1"})] == ["p1"]
    assert [p.metadata.name for p in light.list(Pod, fields={"spec.nodeName": ""})] == ["p2"]
    with pytest.raises(ApiError) as err:
        list(light.list(Pod, fields={"spec.containers": "x"}))
    assert (err.value.status.code, err.value.status.message) == (
        400, "field label not supported: spec.containers")
    light.create(Secret(metadata=ObjectMeta(name="tls"), type="kubernetes.io/tls",
                        stringData={"tls.crt": "c", "tls.key": "k"}))
    assert [s.metadata.name for s in light.list(Secret, fields={"type": "kubernetes.io/tls"})] \
        == ["tls"]
    # Watches go through the same check.
    with pytest.raises(ApiException) as werr:
        core.list_namespaced_config_map("default", watch=True, field_selector="data.k=v",
                                        _preload_content=False)
    assert status_of(werr.value)["message"].startswith('"data.k" is not a known field selector')


def test_custom_kinds_accept_their_selectable_fields(quiet: SimulatedClusters,
                                                     light: LightClient) -> None:
    vm_kind = create_namespaced_resource("kubevirt.io", "v1", "VirtualMachine",
                                         "virtualmachines")
    light.create(vm_kind.from_dict({"metadata": {"name": "a"}, "spec": VM_SPEC}))
    assert [v.metadata.name for v in light.list(vm_kind, fields={"metadata.name": "a"})] == ["a"]
    with pytest.raises(ApiError) as err:
        list(light.list(vm_kind, fields={"spec.runStrategy": "Halted"}))
    assert err.value.status.message == "field label not supported: spec.runStrategy"
    kind = quiet.store("source").kind("VirtualMachine")
    from dataclasses import replace

    from statemachine.sim import selectors
    with_field = replace(kind, selectable_fields=(".spec.runStrategy",))
    assert selectors.checked_field_selector(with_field, "spec.runStrategy=Halted") == \
        "spec.runStrategy=Halted"


def test_namespace_object_is_unaffected_by_spec_writes(light: LightClient) -> None:
    light.create(Namespace(metadata=ObjectMeta(name="keep")))
    patched = light.patch(Namespace, "keep", {"spec": {"finalizers": []}}, patch_type=_merge())
    assert patched.spec.finalizers == ["kubernetes"]


def test_core_event_selectors_and_deletecollection(kube: Kubectl, light: LightClient,
                                                   core: client.CoreV1Api) -> None:
    from lightkube.resources.core_v1 import Event
    for name, involved in (("e1", "web"), ("e2", "db")):
        light.create(Event.from_dict({
            "metadata": {"name": name}, "reason": "Started", "type": "Normal",
            "involvedObject": {"kind": "Pod", "name": involved, "namespace": "default"},
            "source": {"component": "kubelet"}}))
    # What kubectl describe and kubectl events send: involvedObject.* and friends.
    got = light.list(Event, fields={"involvedObject.name": "web", "source": "kubelet"})
    assert [e.metadata.name for e in got] == ["e1"]
    proc = kube("get", "events", "--field-selector", "note=x", check=False)
    assert "field label not supported: note" in proc.stderr
    # deletecollection goes through the same check, and deletes only what matches.
    body = refused(lambda: core.delete_collection_namespaced_event(
        "default", field_selector="reportingInstance=x"))
    assert (body["code"], body["message"]) == (400, "field label not supported: "
                                                    "reportingInstance")
    core.delete_collection_namespaced_event("default", field_selector="involvedObject.name=db")
    assert [e.metadata.name for e in light.list(Event)] == ["e1"]


def test_crd_selectable_fields_filter_lists(kube: Kubectl) -> None:
    from tests.sim.test_crd import SHIRT_CRD, _shirt
    kube("apply", "-f", "-", input=json.dumps(SHIRT_CRD))
    docs = [_shirt("red-1", {"color": "red"}), _shirt("blue-1", {"color": "blue"})]
    for doc in docs:
        kube("apply", "-f", "-", input=json.dumps(doc))
    got = kube("get", "shirts", "--field-selector", "spec.color=red", "-o", "name").stdout
    assert got.split() == ["shirt.stable.example.com/red-1"]
    got = kube("get", "shirts", "--field-selector", "spec.color!=red,metadata.namespace=default",
               "-o", "name").stdout
    assert got.split() == ["shirt.stable.example.com/blue-1"]
    proc = kube("get", "shirts", "--field-selector", "spec.size=M", check=False)
    assert "field label not supported: spec.size" in proc.stderr


# ------------------------------------------------------------- resourceVersion on a create
def test_a_create_carrying_a_resource_version_is_refused_by_storage(core: client.CoreV1Api,
                                                                   kube: Kubectl) -> None:
    """etcd3 storage refuses it with a plain error: 500, no reason, no details (a copy that
    forgot to drop the source's resourceVersion fails like this on a real cluster)."""
    message = "resourceVersion should not be set on objects to be created"
    body = refused(lambda: core.create_namespaced_config_map(
        "default", _cm("carried", resourceVersion="5")))
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "code": 500}
    # Storage checks it before it looks for the name: it wins over AlreadyExists.
    core.create_namespaced_config_map("default", _cm("there"))
    body = refused(lambda: core.create_namespaced_config_map(
        "default", _cm("there", resourceVersion="7")))
    assert body["code"] == 500 and body["message"] == message
    # A dry run never reaches storage; a version that does not parse as a number is ignored.
    core.create_namespaced_config_map("default", _cm("dry", resourceVersion="5"), dry_run="All")
    core.create_namespaced_config_map("default", _cm("odd", resourceVersion="-1"))
    assert core.read_namespaced_config_map("odd", "default").metadata.resource_version != "-1"
    # Server-side apply of a missing object creates it through the same storage.
    done = _apply(kube, _cm("applied", resourceVersion="3"), "--server-side")
    assert done.returncode != 0 and message in done.stderr


# ------------------------------------------------------------------- Go's typed decoding
def _raw(kube: Kubectl, verb: str, path: str, doc: dict[str, Any]) -> str:
    """kubectl's raw request (the typed clients refuse such bodies themselves); its stderr."""
    done = kube(verb, "--raw", path, "-f", "-", input=json.dumps(doc), check=False)
    assert done.returncode != 0
    return done.stderr.strip()


def test_unquoted_values_in_string_maps_do_not_decode(core: client.CoreV1Api,
                                                      kube: Kubectl) -> None:
    """A YAML ``1`` or ``true`` left unquoted in a ConfigMap's data, a Secret's stringData or a
    label is a number or bool in JSON: Go's decoder refuses the body (400), whatever
    fieldValidation says, and nothing is stored."""
    cms = "/api/v1/namespaces/default/configmaps"
    cm = {**_cm("typed"), "data": {"port": 5432}}
    assert _raw(kube, "create", cms, cm) == (
        'Error from server (BadRequest): ConfigMap in version "v1" cannot be handled as a '
        "ConfigMap: json: cannot unmarshal number into Go struct field ConfigMap.data of type "
        "string")
    done = _apply(kube, {**cm, "data": {"enabled": True}})
    assert done.returncode != 0
    assert ("cannot unmarshal bool into Go struct field ConfigMap.data of type string"
            in done.stderr)
    assert refused(lambda: core.read_namespaced_config_map("typed", "default"))["code"] == 404
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "stringData": {"pin": 1234}}
    assert _raw(kube, "create", "/api/v1/namespaces/default/secrets", secret).endswith(
        "cannot unmarshal number into Go struct field Secret.stringData of type string")
    labelled = _cm("labelled")
    labelled["metadata"]["labels"] = {"tier": 1}
    assert _raw(kube, "create", cms, labelled).endswith(
        "cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string")
    # A replace is decoded the same way; a whole map of the wrong shape names the map type.
    core.create_namespaced_config_map("default", _cm("fine"))
    assert _raw(kube, "replace", f"{cms}/fine", {**_cm("fine"), "data": ["a"]}).endswith(
        "cannot unmarshal array into Go struct field ConfigMap.data of type map[string]string")


# ------------------------------------------------------------------ JSON patch failures
def test_a_json_patch_that_does_not_apply_is_a_generic_422(core: client.CoreV1Api,
                                                           kube: Kubectl) -> None:
    """Upstream wraps the patch library's error in a generic 422: the message says only that
    the request was rejected, the library's error is the one UnexpectedServerResponse cause, and
    there is no name or kind (a client showing the message alone shows no reason)."""
    core.create_namespaced_config_map("default", _cm("tested"))
    body = refused(lambda: core.patch_namespaced_config_map(
        "tested", "default", [{"op": "test", "path": "/data/k", "value": "other"},
                              {"op": "replace", "path": "/data/k", "value": "new"}],
        _content_type="application/json-patch+json"))
    assert body["code"] == 422 and body["reason"] == "Invalid"
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert body["details"] == {"causes": [{"reason": "UnexpectedServerResponse",
                                           "message": "testing value /data/k failed: test failed"}]}
    assert core.read_namespaced_config_map("tested", "default").data == {"k": "v"}
    body = refused(lambda: core.patch_namespaced_config_map(
        "tested", "default", [{"op": "test", "path": "/nothing/here", "value": "x"}],
        _content_type="application/json-patch+json"))
    assert body["details"]["causes"][0]["message"] == (
        "test operation does not apply: is missing path: /nothing/here: missing value")
    done = kube("patch", "configmap", "tested", "--type=json", "-p",
                '[{"op":"test","path":"/data/k","value":"zz"}]', check=False)
    assert done.returncode != 0


# ------------------------------------------------------------- ConfigMap, Secret, Service rules
def test_configmap_key_in_both_bags_is_refused(core: client.CoreV1Api) -> None:
    body = refused(lambda: core.create_namespaced_config_map("default", {
        "metadata": {"name": "both"}, "data": {"k": "v"}, "binaryData": {"k": "dg=="}}))
    assert body["message"] == ('ConfigMap "both" is invalid: data[k]: Invalid value: "k": '
                               "duplicate of key present in binaryData")
    assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "data[k]",
                                          "message": 'Invalid value: "k": duplicate of key '
                                                     "present in binaryData"}]


def test_typed_secrets_need_their_keys(core: client.CoreV1Api) -> None:
    def secret(name: str, stype: str, **bags: Any) -> dict[str, Any]:
        return {"metadata": {"name": name}, "type": stype, **bags}
    body = refused(lambda: core.create_namespaced_secret("default", secret(
        "tls", "kubernetes.io/tls", data={"tls.crt": "eA=="})))
    assert body["message"] == 'Secret "tls" is invalid: data[tls.key]: Required value'
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "field": "data[tls.key]",
                                          "message": "Required value"}]
    body = refused(lambda: core.create_namespaced_secret("default", secret(
        "pull", "kubernetes.io/dockerconfigjson")))
    assert body["message"] == 'Secret "pull" is invalid: data[.dockerconfigjson]: Required value'
    body = refused(lambda: core.create_namespaced_secret("default", secret(
        "basic", "kubernetes.io/basic-auth")))
    assert body["message"] == ('Secret "basic" is invalid: [data[username]: Required value, '
                               "data[password]: Required value]")
    body = refused(lambda: core.create_namespaced_secret("default", secret(
        "sa", "kubernetes.io/service-account-token")))
    assert body["message"] == ('Secret "sa" is invalid: metadata.annotations'
                               "[kubernetes.io/service-account.name]: Required value")
    # stringData counts (it is folded into data); other types need nothing.
    core.create_namespaced_secret("default", secret(
        "ok", "kubernetes.io/tls", stringData={"tls.crt": "c", "tls.key": "k"}))
    core.create_namespaced_secret("default", secret("custom", "example.com/anything"))


def test_service_needs_ports_unless_headless(core: client.CoreV1Api) -> None:
    body = refused(lambda: core.create_namespaced_service("default", {
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}))
    assert body["message"] == 'Service "web" is invalid: spec.ports: Required value'
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "field": "spec.ports",
                                          "message": "Required value"}]
    core.create_namespaced_service("default", {"metadata": {"name": "headless"},
                                               "spec": {"clusterIP": "None"}})
    core.create_namespaced_service("default", {"metadata": {"name": "ext"}, "spec": {
        "type": "ExternalName", "externalName": "example.com"}})


def test_pvc_spec_rules(core: client.CoreV1Api) -> None:
    body = refused(lambda: core.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "p"}, "spec": {"volumeMode": "Raw"}}))
    assert body["message"] == (
        'PersistentVolumeClaim "p" is invalid: [spec.accessModes: Required value: at least 1 '
        "access mode is required, spec.resources[storage]: Required value, spec.volumeMode: "
        'Unsupported value: "Raw": supported values: "Block", "Filesystem"]')
    assert [c["field"] for c in body["details"]["causes"]] == [
        "spec.accessModes", "spec.resources[storage]", "spec.volumeMode"]
    body = refused(lambda: core.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "p"}, "spec": {"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "0"}}}}))
    assert body["message"] == (
        'PersistentVolumeClaim "p" is invalid: [spec.accessModes: Forbidden: may not use '
        "ReadWriteOncePod with other access modes, spec.resources[storage]: Invalid value: "
        '"0": must be greater than zero]')


def test_pvc_class_may_be_set_once_and_volume_mode_is_immutable(
        quiet: SimulatedClusters, core: client.CoreV1Api) -> None:
    store = quiet.store("source")
    store.mutate("StorageClass", None, "standard", lambda sc: sc["metadata"]["annotations"].pop(
        "storageclass.kubernetes.io/is-default-class"))
    core.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "p"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}}})
    patched = core.patch_namespaced_persistent_volume_claim(
        "p", "default", {"spec": {"storageClassName": "standard"}})
    assert patched.spec.storage_class_name == "standard"
    body = refused(lambda: core.patch_namespaced_persistent_volume_claim(
        "p", "default", {"spec": {"storageClassName": "local-wffc"}}))
    assert body["message"].startswith('PersistentVolumeClaim "p" is invalid: spec: Forbidden: '
                                      "spec is immutable after creation")
    body = refused(lambda: core.patch_namespaced_persistent_volume_claim(
        "p", "default", {"spec": {"volumeMode": "Block"}}))
    assert body["details"]["causes"][-1] == {
        "reason": "FieldValueInvalid", "field": "volumeMode",
        "message": 'Invalid value: "Block": field is immutable'}


def test_docker_config_secrets_must_hold_a_json_object(core: client.CoreV1Api) -> None:
    def pull(name: str, text: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "type": "kubernetes.io/dockerconfigjson",
                "stringData": {".dockerconfigjson": text}}
    body = refused(lambda: core.create_namespaced_secret("default", pull("bad", "{auths")))
    assert body["message"] == (
        'Secret "bad" is invalid: data[.dockerconfigjson]: Invalid value: "<secret contents '
        "redacted>\": invalid character 'a' looking for beginning of object key string")
    body = refused(lambda: core.create_namespaced_secret("default", pull("list", "[]")))
    assert body["message"].endswith(
        "json: cannot unmarshal array into Go value of type map[string]interface {}")
    core.create_namespaced_secret("default", pull("good", '{"auths": {}}'))
