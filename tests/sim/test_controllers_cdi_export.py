"""DataVolumes, PVC binding and VirtualMachineExport, driven through the simulated stores.

Includes the cold-migration path across the two clusters: a VMExport on the source and an http
DataVolume on the target that downloads the export's external link with the export token.
"""
from __future__ import annotations

import base64
import threading
import time
from typing import Any

from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.store import Store, StoreEvent
from polling import wait_for

NS = "shop"


def cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == ctype)


def dv(name: str, source: dict[str, Any], *, annotations: dict[str, str] | None = None,
       storage_class: str | None = None) -> dict[str, Any]:
    storage: dict[str, Any] = {"resources": {"requests": {"storage": "2Gi"}},
                               "accessModes": ["ReadWriteMany"]}
    if storage_class:
        storage["storageClassName"] = storage_class
    return {"metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
            "spec": {"source": source, "storage": storage}}


def phases_of(store: Store, name: str, until: tuple[str, ...]) -> list[str]:
    """Every phase the DataVolume goes through until one of ``until``, from the store's commit
    stream (polling could miss a phase that lasts one tick on a loaded machine)."""
    seen: list[str] = []
    lock = threading.Lock()

    def note(phase: str | None) -> None:
        with lock:
            if phase and (not seen or seen[-1] != phase):
                seen.append(phase)

    def on_commit(event: StoreEvent) -> None:
        if event.kind.kind == "DataVolume" and event.obj["metadata"]["name"] == name:
            note((event.obj.get("status") or {}).get("phase"))
    unsubscribe = store.subscribe(on_commit)
    try:
        note((store.get("DataVolume", NS, name).get("status") or {}).get("phase"))
        wait_for(lambda: bool(seen) and seen[-1] in until, what=f"DataVolume {name} in {until}")
    finally:
        unsubscribe()
    return list(seen)


def test_blank_datavolume_phases_conditions_and_pvc(shop_clusters: SimulatedClusters) -> None:
    t = shop_clusters.store("target")
    t.create("DataVolume", dv("disk", {"blank": {}}))
    seen = phases_of(t, "disk", ("Succeeded", "Failed"))
    assert seen == ["Pending", "PVCBound", "ImportScheduled", "ImportInProgress", "Succeeded"]
    obj = t.get("DataVolume", NS, "disk")
    assert obj["status"]["progress"] == "100.0%"
    assert cond(obj, "Ready")["status"] == "True"
    assert (cond(obj, "Bound")["status"], cond(obj, "Bound")["message"]) == ("True",
                                                                             "PVC disk Bound")
    assert (cond(obj, "Running")["reason"], cond(obj, "Running")["message"]) == (
        "Completed", "Import Complete")
    pvc = t.get("PersistentVolumeClaim", NS, "disk")
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["metadata"]["ownerReferences"][0]["kind"] == "DataVolume"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_fail_annotation_fails_the_datavolume(shop_clusters: SimulatedClusters) -> None:
    t = shop_clusters.store("target")
    t.create("DataVolume", dv("bad", {"blank": {}}, annotations={"sim.smrun.io/fail": "true"}))
    assert phases_of(t, "bad", ("Succeeded", "Failed"))[-1] == "Failed"
    assert cond(t.get("DataVolume", NS, "bad"), "Running")["reason"] == "Error"


def test_wait_for_first_consumer_until_bind_immediate(shop_clusters: SimulatedClusters) -> None:
    t = shop_clusters.store("target")
    t.create("DataVolume", dv("wffc", {"blank": {}}, storage_class="local-wffc"))
    wait_for(lambda: t.get("DataVolume", NS, "wffc")["status"]["phase"] == "WaitForFirstConsumer")
    time.sleep(0.1)
    assert t.get("DataVolume", NS, "wffc")["status"]["phase"] == "WaitForFirstConsumer"
    t.create("DataVolume", dv("imm", {"blank": {}}, storage_class="local-wffc", annotations={
        "cdi.kubevirt.io/storage.bind.immediate.requested": "true"}))
    assert phases_of(t, "imm", ("Succeeded",))[-1] == "Succeeded"


def test_unreachable_http_source_keeps_retrying(shop_clusters: SimulatedClusters) -> None:
    """As CDI: no retry limit, the DV stays ImportInProgress while restartCount grows and
    Running flaps (kubevirt-fidelity.md §8); every failed attempt is an event."""
    t = shop_clusters.store("target")
    t.create("DataVolume", dv("web", {"http": {"url": "https://nowhere.example/disk.img"}}))
    wait_for(lambda: (t.get("DataVolume", NS, "web").get("status") or {})
             .get("restartCount", 0) >= 3)
    obj = t.get("DataVolume", NS, "web")
    assert obj["status"]["phase"] == "ImportInProgress"
    assert obj["status"]["progress"] == "N/A"
    running = wait_for(lambda: next(c for c in t.get("DataVolume", NS, "web")["status"][
        "conditions"] if c["type"] == "Running" and c["status"] == "False"))
    assert running["reason"] == "Error"
    assert running["message"].startswith("Unable to connect to http data source: ")
    assert "no such host" in running["message"]
    pvc = t.get("PersistentVolumeClaim", NS, "web")
    assert int(pvc["metadata"]["annotations"]["cdi.kubevirt.io/storage.pod.restarts"]) >= 3
    evs = t.list("Event", NS, field_selector="involvedObject.name=web")
    by_reason = {(e["involvedObject"]["kind"], e["reason"]): e for e in evs}
    assert by_reason[("DataVolume", "Error")]["type"] == "Warning"
    assert by_reason[("DataVolume", "Error")]["count"] >= 2
    assert by_reason[("PersistentVolumeClaim", "ErrImportFailed")]["source"] == {
        "component": "import-controller"}
    assert by_reason[("DataVolume", "ImportInProgress")]["message"] == "Import into web in progress"
    assert t.get("DataVolume", NS, "web")["status"]["phase"] == "ImportInProgress"


def test_http_progress_rises(shop_clusters: SimulatedClusters) -> None:
    t = shop_clusters.store("target")
    t.create("DataVolume", dv("img", {"http": {"url": "https://images.sim.smrun.io/f.qcow2"}}))
    progress: list[str] = []

    def step() -> bool:
        st = t.get("DataVolume", NS, "img").get("status") or {}
        if st.get("progress") and (not progress or progress[-1] != st["progress"]):
            progress.append(st["progress"])
        return st.get("phase") == "Succeeded"
    wait_for(step)
    numbers = [float(p.rstrip("%")) for p in progress if p != "N/A"]
    assert numbers == sorted(numbers) and numbers[-1] == 100.0 and len(numbers) >= 3


def stopped_vm_with_disk(s: Store) -> None:
    s.create("DataVolume", dv("vm1-root", {"blank": {}}))
    wait_for(lambda: s.get("DataVolume", NS, "vm1-root")["status"]["phase"] == "Succeeded")
    s.create("VirtualMachine", {"metadata": {"name": "vm1", "namespace": NS}, "spec": {
        "runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "1Gi"}}, "volumes": [
            {"name": "root", "dataVolume": {"name": "vm1-root"}}]}}}})


def test_export_requires_a_stopped_vm_and_publishes_links(shop_clusters: SimulatedClusters) -> None:
    s = shop_clusters.store("source")
    stopped_vm_with_disk(s)
    s.patch("VirtualMachine", NS, "vm1", {"spec": {"runStrategy": "Always"}})
    wait_for(lambda: s.get("VirtualMachineInstance", NS, "vm1")["status"]["phase"] == "Running")
    s.create("VirtualMachineExport", {"metadata": {"name": "vm1", "namespace": NS}, "spec": {
        "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm1"}}})
    wait_for(lambda: cond(s.get("VirtualMachineExport", NS, "vm1"), "Ready")["reason"] == "InUse")
    assert s.get("VirtualMachineExport", NS, "vm1")["status"]["phase"] == "Pending"
    s.patch("VirtualMachine", NS, "vm1", {"spec": {"runStrategy": "Halted"}})
    wait_for(lambda: s.get("VirtualMachineExport", NS, "vm1")["status"]["phase"] == "Ready")
    export = s.get("VirtualMachineExport", NS, "vm1")
    assert (cond(export, "Ready")["status"], cond(export, "Ready")["reason"]) == ("True",
                                                                                  "PodReady")
    vol = export["status"]["links"]["external"]["volumes"][0]
    assert vol["name"] == "vm1-root"
    assert [f["format"] for f in vol["formats"]] == ["raw", "gzip"]
    assert "/api/export.kubevirt.io/v1/namespaces/shop/virtualmachineexports/vm1/volumes/" \
           "vm1-root/disk.img.gz" in vol["formats"][1]["url"]
    secret = s.get("Secret", NS, export["status"]["tokenSecretRef"])
    assert len(base64.b64decode(secret["data"]["token"])) == 20
    assert export["status"]["ttlExpirationTime"]


def test_cold_copy_across_clusters_needs_the_token(shop_clusters: SimulatedClusters) -> None:
    s, t = shop_clusters.store("source"), shop_clusters.store("target")
    stopped_vm_with_disk(s)
    s.create("VirtualMachineExport", {"metadata": {"name": "vm1", "namespace": NS}, "spec": {
        "source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "vm1"}}})
    wait_for(lambda: s.get("VirtualMachineExport", NS, "vm1")["status"]["phase"] == "Ready")
    export = s.get("VirtualMachineExport", NS, "vm1")
    url = export["status"]["links"]["external"]["volumes"][0]["formats"][1]["url"]
    token = base64.b64decode(s.get("Secret", NS, export["status"]["tokenSecretRef"])["data"][
        "token"]).decode()
    t.create("Secret", {"metadata": {"name": "hdr", "namespace": NS},
                        "stringData": {"token": f"x-kubevirt-export-token:{token}"}})
    t.create("DataVolume", dv("copy", {"http": {"url": url, "secretExtraHeaders": ["hdr"]}}))
    t.create("DataVolume", dv("notoken", {"http": {"url": url}}))
    assert phases_of(t, "copy", ("Succeeded", "Failed"))[-1] == "Succeeded"
    # Without the token every attempt gets 401 and CDI keeps retrying (no Failed phase).
    # One snapshot, taken between two attempts (Running=False): during an attempt the condition
    # is Running=True without a message, and a second read could fall into one under load.
    def failed_again() -> dict[str, Any] | None:
        notoken = t.get("DataVolume", NS, "notoken")
        retried = (notoken.get("status") or {}).get("restartCount", 0) >= 2
        return notoken if retried and cond(notoken, "Running")["status"] == "False" else None
    notoken = wait_for(failed_again, what="a second failed attempt")
    assert notoken["status"]["phase"] == "ImportInProgress"
    assert "401" in cond(notoken, "Running")["message"]


def test_plain_pvc_binds(shop_clusters: SimulatedClusters) -> None:
    t = shop_clusters.store("target")
    t.create("PersistentVolumeClaim", {"metadata": {"name": "scratch", "namespace": NS}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    wait_for(lambda: t.get("PersistentVolumeClaim", NS, "scratch")["status"]["phase"] == "Bound")


def _claim_of(store: Store, name: str) -> dict[str, Any]:
    return wait_for(lambda: store.try_get("PersistentVolumeClaim", NS, name),
                    what=f"PVC {name}")


def test_storage_claims_take_cdi_class_and_profile_modes(
        shop_clusters: SimulatedClusters) -> None:
    """``spec.storage``: CDI names the class (the virt default first) and fills missing modes
    from its StorageProfile; ``spec.pvc`` is passed on, the default class named by the API."""
    t = shop_clusters.store("target")
    size = {"resources": {"requests": {"storage": "1Gi"}}}

    def make(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        t.create("DataVolume", {"metadata": {"name": name, "namespace": NS},
                                "spec": {"source": {"blank": {}}, **spec}})
        return _claim_of(t, name)["spec"]

    bare = make("bare", {"storage": dict(size)})  # standard's first set: RWX Block
    assert (bare["storageClassName"], bare["accessModes"], bare["volumeMode"]) == (
        "standard", ["ReadWriteMany"], "Block")
    # CDI asks for the size in bytes; a Filesystem claim 1MiB-aligned plus 5.5 % overhead.
    assert bare["resources"]["requests"]["storage"] == "1073741824"
    fs = make("fs", {"storage": {**size, "volumeMode": "Filesystem"}})
    assert (fs["accessModes"], fs["volumeMode"]) == (["ReadWriteOnce"], "Filesystem")
    assert fs["resources"]["requests"]["storage"] == "1132797625"
    rwo = make("rwo", {"storage": {**size, "accessModes": ["ReadWriteOnce"]}})
    assert rwo["volumeMode"] == "Filesystem"
    legacy = make("legacy", {"pvc": {**size, "accessModes": ["ReadWriteOnce"]}})
    assert (legacy["storageClassName"], legacy["volumeMode"]) == ("standard", "Filesystem")
    assert legacy["resources"]["requests"]["storage"] == "1Gi"  # spec.pvc: as written
    t.mutate("StorageClass", None, "local-wffc", lambda sc: sc["metadata"].setdefault(
        "annotations", {}).update({"storageclass.kubevirt.io/is-default-virt-class": "true"}))
    virt = make("virt", {"storage": dict(size)})
    assert virt["storageClassName"] == "local-wffc"
    # spec.pvc is not CDI's to render: the Kubernetes default class, not the virt one.
    assert make("plain", {"pvc": {**size, "accessModes": ["ReadWriteOnce"]}})[
        "storageClassName"] == "standard"


def test_an_unbound_claim_without_a_class_gets_the_default_one(
        shop_clusters: SimulatedClusters) -> None:
    """The PV controller's retroactive default class; a bound claim keeps having none."""
    t = shop_clusters.store("target")
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    t.create("PersistentVolumeClaim", {"metadata": {"name": "old", "namespace": NS},
                                       "spec": dict(spec)})
    t.create("PersistentVolumeClaim", {"metadata": {"name": "bound", "namespace": NS},
                                       "spec": {**spec, "volumeName": "pv-1"},
                                       "status": {"phase": "Bound"}}, keep_status=True)
    claim = wait_for(lambda: (c := t.get("PersistentVolumeClaim", NS, "old"))["status"].get(
        "phase") == "Bound" and c, what="claim bound")
    assert claim["spec"]["storageClassName"] == "standard"
    assert "storageClassName" not in t.get("PersistentVolumeClaim", NS, "bound")["spec"]
