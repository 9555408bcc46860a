"""PersistentVolumes in the simulator, as kubectl and the stores see them: the kind served
(discovery, ``kubectl get pv`` columns), dynamic provisioning when a claim binds (plain and
CDI's), the reclaim policy after the claim is deleted, seeded Bound claims made consistent, and
the apiserver's validation of a PV (``statemachine/sim/volumes.py``)."""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polling import wait_for
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.store import Store, StoreEvent
from tests.conftest import kubectl_for

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
NS = "shop"
_SIZE = {"resources": {"requests": {"storage": "3Gi"}}}


def _claim(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], **_SIZE, **spec}}


def _bound(name: str, **spec: Any) -> dict[str, Any]:
    out = _claim(name, **spec)
    out["status"] = {"phase": "Bound"}
    return out


SEED = {"source": [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "keep"},
     "provisioner": "keep.csi.example.com", "reclaimPolicy": "Retain",
     "parameters": {"csi.storage.k8s.io/fstype": "xfs"}},
    _bound("dynamic", storageClassName="standard", volumeMode="Block"),
    _bound("named", storageClassName="standard", volumeName="pv-static"),
    _bound("own", storageClassName="standard", volumeName="pv-own"),
    {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-own"},
     "spec": {"capacity": {"storage": "7Gi"}, "accessModes": ["ReadWriteMany"],
              "nfs": {"server": "nfs.example.com", "path": "/own"},
              "claimRef": {"namespace": NS, "name": "own"}},
     "status": {"phase": "Bound"}},
    _bound("chosen", storageClassName="standard"),
    {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-chosen"},
     "spec": {"capacity": {"storage": "3Gi"}, "accessModes": ["ReadWriteOnce"],
              "storageClassName": "standard",
              "csi": {"driver": "sim.smrun.io/hostpath", "volumeHandle": "chosen"},
              "claimRef": {"namespace": NS, "name": "chosen"}}},
]}


@pytest.fixture
def cluster(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    return make_sim(seed=SEED, tick=0.02)


@pytest.fixture
def kubectl_of(cluster: SimulatedClusters, tmp_path: Path) -> Kubectl:
    return kubectl_for(cluster, tmp_path)


def _bound_claim(store: Store, name: str) -> dict[str, Any]:
    return wait_for(lambda: (c := store.get("PersistentVolumeClaim", NS, name))["status"].get(
        "phase") == "Bound" and c, what=f"claim {name} bound")


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_seeded_bound_claims_get_their_volumes(cluster: SimulatedClusters) -> None:
    """A Bound claim without a volume is given one as if provisioned; one naming a missing
    volume gets that PV, pre-bound; a claim and PV the seed wrote together are left alone."""
    s = cluster.store("source")
    claim = s.get("PersistentVolumeClaim", NS, "dynamic")
    uid = claim["metadata"]["uid"]
    assert claim["spec"]["volumeName"] == f"pvc-{uid}"
    assert claim["metadata"]["annotations"] == {
        "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
        "volume.beta.kubernetes.io/storage-provisioner": "sim.smrun.io/hostpath",
        "volume.kubernetes.io/storage-provisioner": "sim.smrun.io/hostpath"}
    assert claim["status"] == {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                               "capacity": {"storage": "3Gi"}}
    pv = s.get("PersistentVolume", None, f"pvc-{uid}")
    assert pv["spec"]["claimRef"]["uid"] == uid
    assert (pv["spec"]["volumeMode"], pv["status"]["phase"]) == ("Block", "Bound")

    named = s.get("PersistentVolumeClaim", NS, "named")
    assert named["metadata"]["annotations"] == {"pv.kubernetes.io/bind-completed": "yes"}
    assert named["status"]["capacity"] == {"storage": "3Gi"}
    static = s.get("PersistentVolume", None, "pv-static")
    assert static["spec"]["claimRef"]["name"] == "named"
    assert static["spec"]["capacity"] == {"storage": "3Gi"}

    own = s.get("PersistentVolumeClaim", NS, "own")
    assert own["metadata"]["annotations"] == {"pv.kubernetes.io/bind-completed": "yes"}
    assert own["status"]["capacity"] == {"storage": "7Gi"}  # filled from the seed's PV
    own_pv = s.get("PersistentVolume", None, "pv-own")
    assert "csi" not in own_pv["spec"]
    assert own_pv["spec"]["claimRef"]["uid"] == own["metadata"]["uid"]  # completed
    assert own_pv["status"]["phase"] == "Bound"
    # A claim naming no volume, with a seeded PV pre-bound to it by claimRef: that one.
    chosen = s.get("PersistentVolumeClaim", NS, "chosen")
    assert chosen["spec"]["volumeName"] == "pv-chosen"
    assert chosen["metadata"]["annotations"] == {
        "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"}
    assert s.get("PersistentVolume", None, "pv-chosen")["status"]["phase"] == "Bound"
    assert len(s.list("PersistentVolume")) == 4


def test_kubectl_get_pv_and_pvc_columns(cluster: SimulatedClusters, kubectl_of: Kubectl) -> None:
    s = cluster.store("source")
    uid = s.get("PersistentVolumeClaim", NS, "dynamic")["metadata"]["uid"]
    resources = kubectl_of("api-resources", "--api-group=").stdout
    assert ["persistentvolumes", "pv", "v1", "false", "PersistentVolume"] in _rows(resources)
    header, *rows = _rows(kubectl_of("get", "pv", "-o", "wide").stdout)
    assert header == ["NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS",
                      "CLAIM", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "REASON", "AGE",
                      "VOLUMEMODE"]
    by_name = {r[0]: r for r in rows}
    row = by_name[f"pvc-{uid}"]
    assert row[:7] == [f"pvc-{uid}", "3Gi", "RWO", "Delete", "Bound", f"{NS}/dynamic",
                       "standard"]
    assert (row[7], row[-1]) == ("<unset>", "Block")
    # The seed's own PV: no class, the Retain default, its claim.
    assert by_name["pv-own"][:6] == ["pv-own", "7Gi", "RWX", "Retain", "Bound", f"{NS}/own"]
    pvc = {r[0]: r for r in _rows(kubectl_of("get", "pvc", "-n", NS).stdout)[1:]}
    assert pvc["dynamic"][:5] == ["dynamic", "Bound", f"pvc-{uid}", "3Gi", "RWO"]
    assert pvc["own"][:5] == ["own", "Bound", "pv-own", "7Gi", "RWX"]
    got = kubectl_of("get", "pv", f"pvc-{uid}", "-o",
                     "jsonpath={.spec.csi.driver} {.spec.claimRef.name}").stdout
    assert got == "sim.smrun.io/hostpath dynamic"


def test_binding_provisions_a_volume(cluster: SimulatedClusters, kubectl_of: Kubectl) -> None:
    """A claim created through the API: the PV external-provisioner would create, bound by the
    PV controller; the claim's annotations and status from it."""
    s = cluster.store("source")
    kubectl_of("create", "-f", "-", input=json.dumps(_claim("fresh", storageClassName="keep")))
    claim = _bound_claim(s, "fresh")
    md = claim["metadata"]
    pv = s.get("PersistentVolume", None, f"pvc-{md['uid']}")
    assert claim["spec"]["volumeName"] == pv["metadata"]["name"]
    assert md["annotations"]["volume.kubernetes.io/storage-provisioner"] == \
        "keep.csi.example.com"
    assert md["annotations"]["pv.kubernetes.io/bound-by-controller"] == "yes"
    assert claim["status"]["capacity"] == pv["spec"]["capacity"] == {"storage": "3Gi"}
    spec = pv["spec"]
    assert spec["claimRef"] == {"kind": "PersistentVolumeClaim", "namespace": NS,
                                "name": "fresh", "uid": md["uid"], "apiVersion": "v1",
                                "resourceVersion": spec["claimRef"]["resourceVersion"]}
    assert int(spec["claimRef"]["resourceVersion"]) > 0
    assert (spec["accessModes"], spec["volumeMode"], spec["storageClassName"],
            spec["persistentVolumeReclaimPolicy"]) == (
        ["ReadWriteOnce"], "Filesystem", "keep", "Retain")
    assert spec["csi"]["driver"] == "keep.csi.example.com"
    assert spec["csi"]["volumeHandle"] == pv["metadata"]["name"]
    assert spec["csi"]["fsType"] == "xfs"  # the class's fstype parameter
    assert "nodeAffinity" not in spec
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == \
        "keep.csi.example.com"
    # Retain: no external-provisioner finalizer, only the protection one.
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    assert pv["status"]["phase"] == "Bound" and pv["status"]["lastPhaseTransitionTime"]
    managers = {m["manager"] for m in pv["metadata"]["managedFields"]}
    assert "csi-provisioner" in managers


def _blank_datavolume(store: Store, name: str, size: str,
                      mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A blank DataVolume of ``size`` and volume ``mode``: its claim once bound, and the PV."""
    store.create("DataVolume", {"metadata": {"name": name, "namespace": NS},
                                "spec": {"source": {"blank": {}},
                                         "storage": {"resources": {"requests": {"storage": size}},
                                                     "volumeMode": mode}}})
    claim = _bound_claim(store, name)
    return claim, store.get("PersistentVolume", None, claim["spec"]["volumeName"])


def test_a_datavolume_claim_gets_a_volume_of_its_size(cluster: SimulatedClusters) -> None:
    claim, pv = _blank_datavolume(cluster.store("source"), "disk", "1Gi", "Filesystem")
    asked = claim["spec"]["resources"]["requests"]["storage"]
    assert asked == "1132797625"  # CDI's overhead-inflated byte count
    assert pv["spec"]["capacity"] == claim["status"]["capacity"] == {"storage": asked}
    assert pv["metadata"]["finalizers"] == [
        "external-provisioner.volume.kubernetes.io/finalizer", "kubernetes.io/pv-protection"]


def test_a_volumes_capacity_is_the_drivers_byte_count_in_binary_si(
        cluster: SimulatedClusters) -> None:
    """A Block DataVolume's claim asks for its size in bytes (CDI renders 10737418240); the
    provisioner writes the volume's size as a binary-SI quantity, and the claim's status shows
    the volume's."""
    claim, pv = _blank_datavolume(cluster.store("source"), "raw", "10Gi", "Block")
    assert claim["spec"]["resources"]["requests"]["storage"] == "10737418240"
    assert pv["spec"]["capacity"] == claim["status"]["capacity"] == {"storage": "10Gi"}


def _phases(store: Store, name: str) -> Callable[[], list[str]]:
    seen: list[str] = []

    def on(event: StoreEvent) -> None:
        if event.kind.kind == "PersistentVolume" and event.obj["metadata"]["name"] == name:
            phase = "Deleted" if event.type == "DELETED" else (
                "Terminating" if event.obj["metadata"].get("deletionTimestamp")
                else event.obj.get("status", {}).get("phase", ""))
            if not seen or seen[-1] != phase:
                seen.append(phase)
    store.subscribe(on)
    return lambda: list(seen)


def test_reclaim_delete_and_retain(cluster: SimulatedClusters) -> None:
    """Delete: the volume is Released, then deleted after the claim; Retain: Released, kept."""
    s = cluster.store("source")
    uid = s.get("PersistentVolumeClaim", NS, "dynamic")["metadata"]["uid"]
    gone = _phases(s, f"pvc-{uid}")
    s.delete("PersistentVolumeClaim", NS, "dynamic")
    wait_for(lambda: s.try_get("PersistentVolume", None, f"pvc-{uid}") is None,
             what="the Delete volume gone")
    assert gone() == ["Released", "Terminating", "Deleted"]

    s.create("PersistentVolumeClaim", _claim("kept", storageClassName="keep"))
    kept = _bound_claim(s, "kept")["spec"]["volumeName"]
    s.delete("PersistentVolumeClaim", NS, "kept")
    pv = wait_for(lambda: (v := s.get("PersistentVolume", None, kept))["status"][
        "phase"] == "Released" and v, what="the Retain volume released")
    assert pv["spec"]["claimRef"]["name"] == "kept"
    cluster.settle()
    assert s.get("PersistentVolume", None, kept)["status"]["phase"] == "Released"
    # Deleting a released volume: the protection finalizer goes, then the object.
    s.delete("PersistentVolume", None, kept)
    wait_for(lambda: s.try_get("PersistentVolume", None, kept) is None, what="PV deleted")


def test_static_volumes(cluster: SimulatedClusters, kubectl_of: Kubectl) -> None:
    """A PV made through the API: Retain by default, the protection finalizer, Available; a
    claim naming it is bound to it; a claim naming a missing volume stays Pending."""
    s = cluster.store("source")
    kubectl_of("create", "-f", "-", input="""{"apiVersion": "v1", "kind": "PersistentVolume",
      "metadata": {"name": "manual"},
      "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
               "nfs": {"server": "nfs.example.com", "path": "/manual"}}}""")
    pv = wait_for(lambda: (v := s.get("PersistentVolume", None, "manual"))["status"].get(
        "phase") == "Available" and v, what="PV available")
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    s.create("PersistentVolumeClaim", _claim("takes", storageClassName="", volumeName="manual"))
    claim = _bound_claim(s, "takes")
    assert claim["metadata"]["annotations"] == {"pv.kubernetes.io/bind-completed": "yes"}
    assert claim["status"]["capacity"] == {"storage": "5Gi"}
    pv = s.get("PersistentVolume", None, "manual")
    assert pv["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    assert pv["metadata"]["annotations"] == {"pv.kubernetes.io/bound-by-controller": "yes"}
    assert pv["status"]["phase"] == "Bound"
    s.create("PersistentVolumeClaim", _claim("waits", volumeName="nowhere"))
    # A PV pre-bound to a claim by its claimRef is that claim's, before anything is provisioned.
    s.create("PersistentVolume", {"metadata": {"name": "reserved"}, "spec": {
        "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"],
        "nfs": {"server": "nfs.example.com", "path": "/r"},
        "claimRef": {"namespace": NS, "name": "reserving"}}})
    s.create("PersistentVolumeClaim", _claim("reserving", storageClassName=""))
    assert _bound_claim(s, "reserving")["spec"]["volumeName"] == "reserved"
    assert s.get("PersistentVolume", None, "reserved")["spec"]["claimRef"]["uid"] == \
        s.get("PersistentVolumeClaim", NS, "reserving")["metadata"]["uid"]
    cluster.settle()
    assert s.get("PersistentVolumeClaim", NS, "waits")["status"]["phase"] == "Pending"
    assert not [pv for pv in s.list("PersistentVolume")
                if pv["spec"]["claimRef"]["name"] in ("waits", "reserving")
                and pv["metadata"]["name"] != "reserved"]


@pytest.mark.parametrize(("spec", "causes"), [
    ({"nfs": {"server": "s", "path": "/"}},
     ["spec.accessModes: Required value", "spec.capacity: Required value",
      'spec.capacity: Unsupported value: core.ResourceList(nil): supported values: "storage"']),
    ({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]},
     ["spec: Required value: must specify a volume type"]),
    ({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
      "hostPath": {"path": "/x"}, "csi": {"driver": "d", "volumeHandle": "h"}},
     ["spec.csi: Forbidden: may not specify more than 1 volume type"]),
    ({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "csi": {"driver": "d"},
      "persistentVolumeReclaimPolicy": "Keep"},
     ['spec.persistentVolumeReclaimPolicy: Unsupported value: "Keep": supported values: '
      '"Delete", "Recycle", "Retain"', "spec.csi.volumeHandle: Required value"]),
])
def test_volume_validation(kubectl_of: Kubectl, spec: dict[str, Any],
                           causes: list[str]) -> None:
    """ValidatePersistentVolumeSpec's refusals, as kubectl prints a 422 (one cause inline,
    several as a list)."""
    body = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "bad"},
            "spec": spec}
    proc = kubectl_of("create", "-f", "-", input=json.dumps(body), check=False)
    assert proc.returncode == 1
    head = 'The PersistentVolume "bad" is invalid: '
    want = head + causes[0] if len(causes) == 1 else head + "".join(
        f"\n* {c}" for c in causes)
    assert proc.stderr.rstrip("\n") == want


def test_explain_and_field_selectors(kubectl_of: Kubectl) -> None:
    """``kubectl explain`` finds the PV's fields; its field selectors are the default two."""
    explained = kubectl_of("explain", "pv.spec.csi").stdout
    assert "volumeHandle" in explained and "driver" in explained
    assert kubectl_of("get", "pv", "--field-selector", "metadata.name=pv-own",
                      "-o", "name").stdout == "persistentvolume/pv-own\n"
    proc = kubectl_of("get", "pv", "--field-selector", "status.phase=Bound", check=False)
    assert proc.returncode == 1
    assert '"status.phase" is not a known field selector: only "metadata.name", ' \
           '"metadata.namespace"' in proc.stderr


def test_the_kubernetes_client_reads_volumes(cluster: SimulatedClusters) -> None:
    """The official client's typed models take the PVs and bound claims as they are served."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(cluster.kubeconfig_path),
                                        context="source")
    try:
        core = client.CoreV1Api(api)
        volumes = {pv.metadata.name: pv for pv in core.list_persistent_volume().items}
        claim = core.read_namespaced_persistent_volume_claim("dynamic", NS)
        pv = volumes[claim.spec.volume_name]
        assert (pv.spec.claim_ref.uid, pv.spec.csi.driver, pv.status.phase) == (
            claim.metadata.uid, "sim.smrun.io/hostpath", "Bound")
        assert pv.status.last_phase_transition_time is not None
        assert claim.status.capacity == {"storage": "3Gi"}
    finally:
        api.close()


def _claim_events(store: Store, name: str) -> list[tuple[str, str, str]]:
    evs = store.list("Event", NS, field_selector=f"involvedObject.name={name}")
    evs.sort(key=lambda e: e["metadata"]["name"])  # named by creation time (ns)
    return [(e["reason"], e["source"]["component"], e["message"]) for e in evs]


def test_provisioning_events(cluster: SimulatedClusters) -> None:
    """What ``kubectl describe pvc`` lists: WaitForFirstConsumer once while a WFFC claim has no
    consumer, then ExternalProvisioning, Provisioning and ProvisioningSucceeded."""
    s = cluster.store("source")
    s.create("PersistentVolumeClaim", _claim("later", storageClassName="local-wffc"))
    wait_for(lambda: _claim_events(s, "later"), what="the WaitForFirstConsumer event")
    cluster.settle(timeout=1)  # the claim keeps waiting (requeued), the event is not repeated
    claim = s.get("PersistentVolumeClaim", NS, "later")
    assert claim["status"]["phase"] == "Pending" and not claim["spec"].get("volumeName")
    s.mutate("PersistentVolumeClaim", NS, "later", lambda o: o["metadata"].setdefault(
        "annotations", {}).update({"cdi.kubevirt.io/storage.bind.immediate.requested": "true"}))
    pv = _bound_claim(s, "later")["spec"]["volumeName"]
    driver = "sim.smrun.io/hostpath"
    got = _claim_events(s, "later")
    assert [(reason, component.split("_")[0]) for reason, component, _ in got] == [
        ("WaitForFirstConsumer", "persistentvolume-controller"),
        ("ExternalProvisioning", "persistentvolume-controller"),
        ("Provisioning", driver), ("ProvisioningSucceeded", driver)]
    assert got[0][2] == "waiting for first consumer to be created before binding"
    assert got[1][2] == (
        f"Waiting for a volume to be created either by the external provisioner '{driver}' or "
        "manually by the system administrator. If volume creation is delayed, please verify "
        "that the provisioner is running and correctly registered.")
    assert got[2][2] == f'External provisioner is provisioning volume for claim "{NS}/later"'
    assert got[3][2] == f"Successfully provisioned volume {pv}"
    assert got[2][1] == got[3][1] and got[2][1].startswith(f"{driver}_csi-provisioner-0_")
