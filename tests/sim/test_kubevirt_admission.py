"""KubeVirt's admission webhooks as clients see them (kubevirt-fidelity.md §3; issue 18 item 10):
status codes, reasons, messages and causes, also on ``dryRun=All``, through kubectl and the
``kubernetes`` client."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from polling import wait_for
from tests.sim.refusals import refused

NS = "default"
GROUP, VERSION = "kubevirt.io", "v1"


def custom_api(sim: SimulatedClusters) -> Any:
    from kubernetes import client, config
    return client.CustomObjectsApi(config.new_client_from_config(
        config_file=str(sim.kubeconfig_path), context="source"))


def vm(name: str, memory: bool = True, **spec: Any) -> dict[str, Any]:
    domain: dict[str, Any] = {"devices": {}}
    if memory:
        domain["memory"] = {"guest": "1Gi"}
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": NS},
            "spec": {**spec, "template": {"spec": {"domain": domain}}}}


def vmim(name: str, vmi: str) -> dict[str, Any]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"name": name, "namespace": NS}, "spec": {"vmiName": vmi}}


@pytest.fixture
def running(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    """A running VMI ``vm1`` on clusters without controllers: migrations stay in flight."""
    sim = make_sim(controllers=False)
    sim.store("source").create("VirtualMachineInstance", {
        "metadata": {"name": "vm1", "namespace": NS},
        "spec": {"domain": {"devices": {}, "memory": {"guest": "1Gi"}}},
        "status": {"phase": "Running"}}, keep_status=True)
    return sim


def create_vmim(sim: SimulatedClusters, body: dict[str, Any], **kw: Any) -> Any:
    return custom_api(sim).create_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachineinstancemigrations", body, **kw)


@pytest.mark.parametrize("dry_run", [None, "All"])
def test_migration_for_a_missing_vmi_is_refused(sim: SimulatedClusters,
                                                dry_run: str | None) -> None:
    kw = {"dry_run": dry_run} if dry_run else {}
    body = refused(lambda: create_vmim(sim, vmim("m1", "ghost"), **kw))
    assert body["code"] == 400 and "reason" not in body and "details" not in body
    assert body["message"] == ('admission webhook "migration-create-validator.kubevirt.io" '
                               'denied the request: the VMI "default/ghost" does not exist')


def test_second_in_flight_migration_is_refused(running: SimulatedClusters, tmp_path: Any) -> None:
    from tests.conftest import run_kubectl
    s = running.store("source")
    first = create_vmim(running, vmim("m1", "vm1"))
    assert first["metadata"]["labels"] == {"kubevirt.io/vmi-name": "vm1"}
    assert "kubevirt.io/migrationJobFinalize" in first["metadata"]["finalizers"]
    for kw in ({}, {"dry_run": "All"}):
        body = refused(lambda: create_vmim(running, vmim("m2", "vm1"), **kw))
        assert body["code"] == 400
        assert body["message"] == (
            'admission webhook "migration-create-validator.kubevirt.io" denied the request: '
            f"in-flight migration detected. Active migration job ({first['metadata']['uid']}) "
            "is currently already in progress for VMI vm1.")
    proc = run_kubectl(running, tmp_path / "cache", "apply", "-f", "-", check=False,
                       input=json.dumps(vmim("m3", "vm1")))
    assert proc.returncode == 1
    assert "in-flight migration detected" in proc.stderr
    assert s.try_get("VirtualMachineInstanceMigration", NS, "m2") is None
    # Once the first one is final, a new one is accepted.
    s.update_status("VirtualMachineInstanceMigration", NS, "m1", {"phase": "Succeeded"})
    create_vmim(running, vmim("m2", "vm1"))


def test_migration_spec_is_frozen(running: SimulatedClusters) -> None:
    create_vmim(running, vmim("m1", "vm1"))
    api = custom_api(running)
    for kw in ({}, {"dry_run": "All"}):
        body = refused(lambda: api.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "virtualmachineinstancemigrations", "m1",
            {"spec": {"vmiName": "other"}}, **kw))
        assert (body["code"], body["reason"]) == (422, "Invalid")
        assert body["message"] == ('admission webhook "migration-update-validator.kubevirt.io" '
                                   "denied the request: update of Migration object's spec is "
                                   "restricted")
        assert body["details"]["causes"] == [{
            "reason": "FieldValueInvalid", "field": "spec",
            "message": "update of Migration object's spec is restricted"}]
    # Labels and annotations may change.
    api.patch_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachineinstancemigrations",
                                       "m1", {"metadata": {"annotations": {"a": "b"}}})


def test_vm_with_running_and_run_strategy_is_refused(sim: SimulatedClusters,
                                                     kubectl: Callable[..., Any]) -> None:
    api = custom_api(sim)
    for kw in ({}, {"dry_run": "All"}):
        body = refused(lambda: api.create_namespaced_custom_object(
            GROUP, VERSION, NS, "virtualmachines", vm("both", running=True, runStrategy="Always"),
            **kw))
        assert (body["code"], body["reason"]) == (422, "Invalid")
        message = ("Running and RunStrategy are mutually exclusive. Note that Running is "
                   "deprecated, please use RunStrategy instead")
        assert body["message"] == ('admission webhook "virtualmachine-validator.kubevirt.io" '
                                   f"denied the request: {message}")
        assert body["details"]["causes"] == [{"reason": "FieldValueInvalid",
                                              "message": message, "field": "spec.running"}]
    proc = kubectl("apply", "-f", "-", check=False, input=json.dumps(
        vm("both", running=True, runStrategy="Always")))
    assert "Running and RunStrategy are mutually exclusive" in proc.stderr
    proc = kubectl("apply", "-f", "-", check=False, input=json.dumps(vm("neither")))
    assert "RunStrategy must be specified" in proc.stderr
    assert sim.store("source").try_get("VirtualMachine", NS, "both") is None


def test_vm_without_memory_is_accepted_but_cannot_start(sim: SimulatedClusters,
                                                        kubectl: Callable[..., Any]) -> None:
    api = custom_api(sim)
    api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines",
                                        vm("nomem", memory=False, runStrategy="Always"))
    s = sim.store("source")

    def failure() -> Any:
        conds = (s.get("VirtualMachine", NS, "nomem").get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Failure"), None)
    cond = wait_for(failure)
    assert cond["status"] == "True" and cond["reason"] == "FailedCreate"
    assert s.try_get("VirtualMachineInstance", NS, "nomem") is None
    described = kubectl("describe", "vm", "nomem").stdout
    assert "FailedCreate" in described and "Warning" in described
    events = kubectl("events", "--for", "vm/nomem").stdout
    assert ('Error creating virtual machine instance: admission webhook '
            '"virtualmachineinstances-create-validator.kubevirt.io" denied the request: no memory '
            "requested, at least one of 'spec.domain.memory.guest', "
            "'spec.domain.memory.hugepages.pageSize' or 'spec.domain.resources.requests.memory' "
            "must be set") in " ".join(events.split())
    # The same VMI created directly is refused with 422 and a cause without a field.
    body = refused(lambda: api.create_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachineinstances",
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
         "metadata": {"name": "bare"}, "spec": {"domain": {"devices": {}}}}))
    assert (body["code"], body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["reason"] == "FieldValueRequired"
    assert "field" not in body["details"]["causes"][0]


def test_vmi_create_is_mutated_to_pending(sim: SimulatedClusters) -> None:
    created = custom_api(sim).create_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachineinstances",
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
         "metadata": {"name": "bare"},
         "spec": {"domain": {"devices": {}, "memory": {"guest": "1Gi"}}}}, dry_run="All")
    assert created["status"]["phase"] == "Pending"
    assert created["status"]["phaseTransitionTimestamps"][0]["phase"] == "Pending"
    assert created["metadata"]["finalizers"] == ["kubevirt.io/foregroundDeleteVirtualMachine"]
    assert sim.store("source").try_get("VirtualMachineInstance", NS, "bare") is None


def test_vmi_spec_update_is_refused(running: SimulatedClusters) -> None:
    body = refused(lambda: custom_api(running).patch_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachineinstances", "vm1",
        {"spec": {"hostname": "changed"}}))
    assert body["code"] == 422
    assert body["message"].endswith("update of VMI object is restricted")


# ------------------------------------------------------------------ CDI DataVolumes
def _dv(name: str) -> dict[str, Any]:
    return {"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"source": {"blank": {}},
                     "storage": {"resources": {"requests": {"storage": "1Gi"}}}}}


def test_datavolume_spec_is_frozen_and_a_foreign_pvc_blocks_its_name(
        make_sim: Callable[..., SimulatedClusters]) -> None:
    """CDI's datavolume-validate: 422 with no reason, the message each cause's text after a
    space, as CDI's toRejectedAdmissionResponse words it."""
    sim = make_sim(controllers=False)
    api = custom_api(sim)
    dvs = ("cdi.kubevirt.io", "v1beta1", NS, "datavolumes")
    api.create_namespaced_custom_object(*dvs, _dv("disk"))
    body = refused(lambda: api.patch_namespaced_custom_object(
        *dvs, "disk", {"spec": {"storage": {"resources": {"requests": {"storage": "2Gi"}}}}}))
    assert body["code"] == 422 and "reason" not in body
    assert body["message"] == ('admission webhook "datavolume-validate.cdi.kubevirt.io" denied '
                               "the request:  Cannot update DataVolume Spec")
    assert body["details"]["causes"] == [{"reason": "FieldValueDuplicate",
                                          "message": "Cannot update DataVolume Spec",
                                          "field": "DataVolume.Spec"}]
    api.patch_namespaced_custom_object(*dvs, "disk", {"metadata": {"labels": {"a": "b"}}})
    # A PVC of the name that CDI did not make for a DataVolume refuses the DataVolume.
    sim.store("source").create("PersistentVolumeClaim", {
        "metadata": {"name": "taken", "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}})
    body = refused(lambda: api.create_namespaced_custom_object(*dvs, _dv("taken")))
    assert body["code"] == 422
    assert body["message"].endswith("denied the request:  Destination PVC default/taken already "
                                    "exists")
    assert body["details"]["causes"][0]["field"] == "DataVolume.Name"


@pytest.mark.parametrize(("spec", "message", "field"), [
    ({"source": {"blank": {}}}, "Missing Data volume PVC", "spec.PVC"),
    ({"source": {"blank": {}}, "pvc": {"resources": {"requests": {"storage": "1Gi"}}},
      "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
     "Duplicate storage definition, both target storage and target pvc defined",
     "spec.PVC.Storage"),
    ({"source": {"blank": {}}, "storage": {}}, "Storage size is missing",
     "spec.Storage.resources.requests.size"),
    ({"source": {"blank": {}}, "pvc": {"accessModes": ["ReadWriteOnce"],
                                       "resources": {"requests": {"storage": "0"}}}},
     "PVC size can't be equal or less than zero", "spec.PVC.resources.requests.size"),
    ({"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": "512Ki"}}}},
     "Storage size should be at least 1MiB", "spec.Storage.resources.requests.size"),
    ({"source": {"blank": {}}, "pvc": {"resources": {"requests": {"storage": "1Gi"}}}},
     "Required value: at least 1 access mode is required", "spec.PVC.accessModes"),
    ({"source": {"blank": {}}, "pvc": {"accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                                       "resources": {"requests": {"storage": "1Gi"}}}},
     "PVC multiple accessModes", "spec.PVC.accessModes"),
    ({"storage": {"resources": {"requests": {"storage": "1Gi"}}}},
     "Data volume should have either Source or SourceRef, or be externally populated",
     "spec.source"),
    ({"source": {}, "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
     "Missing Data volume source", "spec.source"),
    ({"source": {"blank": {}, "http": {"url": "https://x/y"}},
      "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
     "Multiple Data volume sources", "spec.source"),
    ({"source": {"http": {"url": "ftp://host/disk.img"}},
      "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
     "spec.source Invalid source URL scheme: ftp://host/disk.img", "spec.source.HTTP.url"),
    ({"source": {"blank": {}}, "contentType": "archive",
      "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
     "SourceType cannot be blank and the contentType be archive", "spec.contentType"),
    ({"sourceRef": {"kind": "DataVolume", "name": "x"},
      "storage": {"resources": {"requests": {"storage": "1Gi"}}}},
     "Unsupported sourceRef kind DataVolume, currently only DataSource is supported",
     "spec.sourceRef.Kind"),
])
def test_datavolume_create_spec_checks(make_sim: Callable[..., SimulatedClusters],
                                       spec: dict[str, Any], message: str, field: str) -> None:
    """datavolume-validate's validateDataVolumeSpec on create: its first cause only."""
    sim = make_sim(controllers=False)
    body = _dv("bad")
    body["spec"] = spec
    status = refused(lambda: custom_api(sim).create_namespaced_custom_object(
        "cdi.kubevirt.io", "v1beta1", NS, "datavolumes", body))
    assert status["code"] == 422 and "reason" not in status
    assert status["message"] == ('admission webhook "datavolume-validate.cdi.kubevirt.io" '
                                 f"denied the request:  {message}")
    assert status["details"]["causes"] == [{"reason": "FieldValueInvalid", "message": message,
                                            "field": field}]


def test_datavolume_clone_without_size_and_valid_imports_are_admitted(
        make_sim: Callable[..., SimulatedClusters]) -> None:
    sim = make_sim(controllers=False)
    api = custom_api(sim)
    dvs = ("cdi.kubevirt.io", "v1beta1", NS, "datavolumes")
    body = _dv("clone")
    body["spec"] = {"source": {"pvc": {"namespace": NS, "name": "src"}}, "storage": {}}
    api.create_namespaced_custom_object(*dvs, body)
    body = _dv("http")
    body["spec"]["source"] = {"http": {"url": "https://images.sim.smrun.io/disk.img"}}
    api.create_namespaced_custom_object(*dvs, body)


# -- instancetype conflicts (kubevirt-fidelity.md §3.2; pkg/instancetype/apply, conflict) --------
SMALL = {"apiVersion": "instancetype.kubevirt.io/v1beta1",
         "kind": "VirtualMachineClusterInstancetype", "metadata": {"name": "small"},
         "spec": {"cpu": {"guest": 2}, "memory": {"guest": "2Gi"},
                  "annotations": {"team": "web"}}}


def conflict(path: str) -> dict[str, str]:
    return {"reason": "FieldValueInvalid", "field": path,
            "message": f"VM field(s) {path} conflicts with selected instance type"}


def sized_vm(name: str, domain: dict[str, Any], **template_meta: Any) -> dict[str, Any]:
    body = vm(name, memory=False, runStrategy="Halted",
              instancetype={"name": "small", "kind": "VirtualMachineClusterInstancetype"})
    body["spec"]["template"]["spec"]["domain"].update(domain)
    if template_meta:
        body["spec"]["template"]["metadata"] = template_meta
    return body


def test_a_template_field_the_instancetype_owns_is_refused(sim: SimulatedClusters,
                                                           kubectl: Callable[..., Any]) -> None:
    """Memory reports its first clash only, CPU every one, annotations with a different value
    each; on create, dry run and update; nothing is stored."""
    sim.store("source").create("VirtualMachineClusterInstancetype", SMALL)
    api = custom_api(sim)
    cases = [
        ({"memory": {"guest": "1Gi"}, "resources": {"requests": {"memory": "1Gi"}}}, {},
         ["spec.template.spec.domain.memory.guest"]),
        ({"cpu": {"sockets": 2, "threads": 1}, "resources": {"limits": {"cpu": "2"}}}, {},
         ["spec.template.spec.domain.resources.limits.cpu", "spec.template.spec.domain.cpu.sockets",
          "spec.template.spec.domain.cpu.threads"]),
        ({}, {"annotations": {"team": "db"}}, ["annotations.team"]),
    ]
    for domain, meta, paths in cases:
        for kw in ({}, {"dry_run": "All"}):
            body = refused(lambda: api.create_namespaced_custom_object(
                GROUP, VERSION, NS, "virtualmachines", sized_vm("clash", domain, **meta), **kw))
            assert (body["code"], body["reason"]) == (422, "Invalid"), body
            assert body["details"]["causes"] == [conflict(p) for p in paths]
            assert body["message"] == (
                'admission webhook "virtualmachine-validator.kubevirt.io" denied the request: '
                + ", ".join(f"VM field(s) {p} conflicts with selected instance type"
                            for p in paths))
    assert sim.store("source").try_get("VirtualMachine", NS, "clash") is None
    # The same annotation value, a model the instancetype does not set: no conflict.
    api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", sized_vm(
        "fits", {"cpu": {"model": "host-passthrough"}}, annotations={"team": "web"}))
    proc = kubectl("patch", "vm", "fits", "--type", "merge", "-p",
                   '{"spec":{"template":{"spec":{"domain":{"memory":{"guest":"4Gi"}}}}}}',
                   check=False)
    assert proc.returncode != 0
    assert ("VM field(s) spec.template.spec.domain.memory.guest conflicts with selected "
            "instance type") in proc.stderr


def test_an_instancetype_that_cannot_be_found_is_not_checked(sim: SimulatedClusters) -> None:
    """Upstream's admitter only logs a failed lookup: a missing instancetype, or one named
    through a revision (the sim serves no ControllerRevisions), lets the VM in."""
    api = custom_api(sim)
    missing = sized_vm("missing", {"memory": {"guest": "1Gi"}})
    api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", missing)
    sim.store("source").create("VirtualMachineClusterInstancetype", SMALL)
    revision = sized_vm("revision", {"memory": {"guest": "1Gi"}})
    revision["spec"]["instancetype"]["revisionName"] = "revision-small-1"
    api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", revision)
    for name in ("missing", "revision"):
        assert sim.store("source").try_get("VirtualMachine", NS, name) is not None


def test_the_vm_mutator_gives_a_new_vm_its_firmware_ids_and_defaults(
        sim: SimulatedClusters) -> None:
    """On create: a random firmware uuid and serial where the template has none (one it names
    is kept, so a copied VM keeps its guest identity), architecture amd64 and machine type q35
    where empty; on update only the last two, so the ids never change."""
    import uuid as uuidlib
    api = custom_api(sim)
    made = api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines",
                                               vm("fresh", runStrategy="Halted"))
    spec = made["spec"]["template"]["spec"]
    firmware = spec["domain"]["firmware"]
    assert uuidlib.UUID(firmware["uuid"]).version == 4 and uuidlib.UUID(firmware["serial"])
    assert firmware["uuid"] != firmware["serial"]
    assert (spec["architecture"], spec["domain"]["machine"]) == ("amd64", {"type": "q35"})
    copied = vm("copied", runStrategy="Halted")
    domain = copied["spec"]["template"]["spec"]["domain"]
    domain["firmware"] = {"uuid": "5d307ca9-b3ef-428c-8861-06e72d69f223"}
    domain["machine"] = {"type": "pc-q35-rhel9.6.0"}
    kept = api.create_namespaced_custom_object(GROUP, VERSION, NS, "virtualmachines", copied)
    assert kept["spec"]["template"]["spec"]["domain"]["firmware"]["uuid"] == \
        "5d307ca9-b3ef-428c-8861-06e72d69f223"
    assert kept["spec"]["template"]["spec"]["domain"]["machine"] == {"type": "pc-q35-rhel9.6.0"}
    # Update: a template whose ids, machine type and architecture are removed gets machine type
    # and architecture back, and no new firmware ids. (A merge patch: it carries no
    # resourceVersion, which the VM controller's status writes move meanwhile.)
    updated = api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "virtualmachines", "fresh",
        {"spec": {"template": {"spec": {"architecture": None, "domain": {
            "firmware": None, "machine": None}}}}})
    spec = updated["spec"]["template"]["spec"]
    assert "firmware" not in spec["domain"]
    assert (spec["architecture"], spec["domain"]["machine"]) == ("amd64", {"type": "q35"})
