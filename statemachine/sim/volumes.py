"""PersistentVolumes: what the PV controller and a CSI external-provisioner make of claims.

Dynamic provisioning on a real cluster takes three writers. The PV controller of
kube-controller-manager (``pkg/controller/volume/persistentvolume/pv_controller.go``) marks an
unbound claim of a class for that class's provisioner (``setClaimProvisioner``: annotations
``volume.kubernetes.io/storage-provisioner`` and ``volume.beta.kubernetes.io/storage-provisioner``);
the CSI external-provisioner (``sig-storage-lib-external-provisioner``) creates the volume and a
PersistentVolume ``pvc-<claim uid>`` already pointing at the claim (``spec.claimRef``); the PV
controller's ``syncVolume`` then ``bind``\\ s both: the PV's phase ``Bound``, then the claim's
``spec.volumeName`` with ``pv.kubernetes.io/bind-completed: "yes"`` and (the controller, not the
user, chose the volume) ``pv.kubernetes.io/bound-by-controller: "yes"``, then the claim's status
(``Bound``, access modes and capacity copied from the PV: ``updateClaimStatus``).
:func:`provision` does all of it in one step (one tick of the simulated controllers), writing in
upstream's order: PV, claim, claim status. A claim that names a volume (``spec.volumeName``) is
bound to that PV when it exists (no ``bound-by-controller`` on the claim; on the PV when its
``claimRef`` had to be set) and stays ``Pending`` while it does not; a claim that names none is
bound to a PV pre-bound to it by its ``claimRef`` (:func:`prebound`) before one is provisioned.

The PV, as external-provisioner v5 writes it (:func:`new_volume`): annotations
``pv.kubernetes.io/provisioned-by: <driver>`` and the empty
``volume.kubernetes.io/provisioner-deletion-secret-name``/``-namespace``; finalizers
``external-provisioner.volume.kubernetes.io/finalizer`` (Delete policy only: the provisioner
deletes the backing volume before the object goes) and ``kubernetes.io/pv-protection`` (the
StorageObjectInUseProtection admission plugin's); ``spec.capacity.storage`` the claim's request
as the driver's byte count in binary SI (CDI's 10737418240 is ``10Gi``), the claim's access and
volume modes, the class's name, ``reclaimPolicy`` (default ``Delete``) and ``mountOptions``;
``spec.csi`` with the class's provisioner as driver, the PV name as ``volumeHandle`` (what
hostpath-style drivers answer), ``fsType`` only when the class's
``csi.storage.k8s.io/fstype`` parameter names one (Filesystem volumes), and the provisioner
identity attribute; ``claimRef`` with the claim's kind, namespace, name, uid, apiVersion and the
resourceVersion it had; status ``Bound``. No ``nodeAffinity``: the simulator's classes name a
made-up driver with no topology.

Released volumes (:func:`sync_volume`, the PV controller's ``syncVolume``/``reclaimVolume``
and the deleters after it): when the claim a PV is bound to is gone (or was replaced by one with
another uid) the PV goes ``Released``; with ``Retain`` it stays so. With ``Delete`` the
external-provisioner deletes it on the next step (its finalizer removed, the object deleted), and
the pv-protection controller then lets it go (``kubernetes.io/pv-protection`` is removed from a
deleted PV that is not ``Bound``). A PV without a ``claimRef`` (or with one not yet given a uid)
is ``Available``. ``status.lastPhaseTransitionTime`` is stamped whenever the phase changes, by
the store (:func:`stamp_phase`, the PV registry strategy's).

Seeds (:func:`seed_volumes`, run once after a cluster's seed objects are stored). Decision: a
seed describes a cluster that existed before smrun looked, so every claim it says is ``Bound``
gets what a real cluster would have: a claim without ``spec.volumeName`` is treated as
dynamically provisioned (PV ``pvc-<uid>``, the claim's ``volumeName`` and annotations as above);
a claim naming a volume the seed does not contain gets a PV of that name, pre-bound to it (the
claim gets ``bind-completed`` only); a claim naming a PV the seed contains keeps both as its
author wrote them, except that the PV's ``claimRef`` gets the claim's uid (which no seed can
know) and the claim ``bind-completed``, as the PV controller's ``bind`` completes a pre-bound
pair; a claim naming none that a seeded PV's ``claimRef`` names is bound to that PV (its
``volumeName`` set, ``bound-by-controller``). A bound claim's status ``accessModes``/``capacity``
are filled from its PV where the seed left them out; a capacity the seed gives sizes the PV.

Events on the claim, as ``kubectl describe pvc`` shows them: ``WaitForFirstConsumer`` (once,
``waiting_for_consumer``) and ``ExternalProvisioning`` from ``persistentvolume-controller``,
``Provisioning`` and ``ProvisioningSucceeded`` from ``<driver>_csi-provisioner-0_<uid>``.

What it does not do: matching unbound claims against other ``Available`` PVs by size, modes
and class (the rest of ``findMatchingVolume``: such a claim is provisioned), topology,
``volume.kubernetes.io/selected-node``, the claim's ``kubernetes.io/pvc-protection`` finalizer,
repeated events (upstream records ``ExternalProvisioning`` and ``WaitForFirstConsumer`` on
every sync), expansion, ``Recycle``, claims whose class does not exist (provisioned by the
default driver rather than left ``Pending``).
"""
from __future__ import annotations

import random
import time
import uuid
from typing import TYPE_CHECKING, Any

from statemachine.sim import managedfields

if TYPE_CHECKING:
    from statemachine.sim.kinds import Kind
    from statemachine.sim.store import Store

Obj = dict[str, Any]

PV = "PersistentVolume"
PVC = "PersistentVolumeClaim"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
DELETION_SECRET_NAME = "volume.kubernetes.io/provisioner-deletion-secret-name"
DELETION_SECRET_NAMESPACE = "volume.kubernetes.io/provisioner-deletion-secret-namespace"
PV_PROTECTION = "kubernetes.io/pv-protection"
PROVISIONER_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
IDENTITY_ATTRIBUTE = "storage.kubernetes.io/csiProvisionerIdentity"
FSTYPE_PARAMETER = "csi.storage.k8s.io/fstype"
#: The driver of a claim whose class is missing (the simulator's classes' provisioner).
DEFAULT_DRIVER = "sim.smrun.io/hostpath"
#: The managers of the writes, as the upstream components' are recorded.
PROVISIONER_MANAGER = "csi-provisioner"
CONTROLLER_MANAGER = "kube-controller-manager"
# external-provisioner's identity: its start time in ms, a random number, the driver.
_IDENTITY = f"{int(time.time() * 1000)}-{random.randint(1000, 9999)}"
#: The Events' components: the PV controller's, and external-provisioner's
#: ``<driver>_<its pod>_<its uid>`` (the pod's name is the simulator's choice).
CONTROLLER_COMPONENT = "persistentvolume-controller"
PROVISIONER_POD = "csi-provisioner-0"
_PROVISIONER_UID = str(uuid.uuid4())
EXTERNAL_PROVISIONING = (
    "Waiting for a volume to be created either by the external provisioner '{}' or manually by "
    "the system administrator. If volume creation is delayed, please verify that the "
    "provisioner is running and correctly registered.")


def volume_name(claim: Obj) -> str:
    """The name a provisioner gives a claim's volume (``pvc-<claim uid>``)."""
    return f"pvc-{claim['metadata']['uid']}"


def class_name(claim: Obj) -> str:
    """``GetPersistentVolumeClaimClass``: the beta annotation, else ``spec.storageClassName``."""
    notes = claim["metadata"].get("annotations") or {}
    if BETA_CLASS in notes:
        return str(notes[BETA_CLASS])
    return str((claim.get("spec") or {}).get("storageClassName") or "")


def _stamp() -> str:
    from statemachine.sim.store import now_rfc3339
    return now_rfc3339()


def stamp_phase(kind: Kind, new: Obj, old: Obj | None) -> None:
    """The PV registry strategy: ``status.lastPhaseTransitionTime`` set on create and whenever
    the phase changes (GA in 1.31). Called by the store on every write of a PV."""
    if kind.group or kind.kind != PV:
        return
    status = new.get("status")
    if not isinstance(status, dict) or not status.get("phase"):
        return
    before = (old or {}).get("status") or {}
    if old is None or before.get("phase") != status["phase"]:
        if old is None and status.get("lastPhaseTransitionTime"):
            return  # a seed's or a controller's own stamp
        status["lastPhaseTransitionTime"] = _stamp()


def new_volume(claim: Obj, storage_class: Obj | None, name: str) -> Obj:
    """The PV external-provisioner creates for ``claim`` (see the module doc)."""
    md, spec = claim["metadata"], claim.get("spec") or {}
    sc = storage_class or {}
    driver = str(sc.get("provisioner") or DEFAULT_DRIVER)
    policy = str(sc.get("reclaimPolicy") or "Delete")
    size = ((claim.get("status") or {}).get("capacity") or {}).get("storage") or (
        (spec.get("resources") or {}).get("requests") or {}).get("storage") or "1Gi"
    # The driver answers CreateVolume with a byte count, which external-provisioner writes as
    # a binary-SI quantity (bytesToQuantity): CDI's 10737418240 becomes 10Gi. Imported here:
    # the controllers' package imports the store, which imports this module.
    from statemachine.sim.controllers.conditions import binary_si, parse_quantity
    size_bytes = parse_quantity(size)
    size = binary_si(size_bytes) if size_bytes > 0 else size
    mode = spec.get("volumeMode") or "Filesystem"
    csi: Obj = {"driver": driver, "volumeHandle": name}
    fstype = (sc.get("parameters") or {}).get(FSTYPE_PARAMETER)
    if fstype and mode == "Filesystem":
        csi["fsType"] = fstype
    csi["volumeAttributes"] = {IDENTITY_ATTRIBUTE: f"{_IDENTITY}-{driver}"}
    pv_spec: Obj = {
        "capacity": {"storage": size}, "csi": csi,
        "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
        "claimRef": {"kind": PVC, "namespace": md.get("namespace"), "name": md["name"],
                     "uid": md["uid"], "apiVersion": "v1",
                     "resourceVersion": md.get("resourceVersion", "")},
        "persistentVolumeReclaimPolicy": policy}
    if class_name(claim):
        pv_spec["storageClassName"] = class_name(claim)
    if sc.get("mountOptions"):
        pv_spec["mountOptions"] = list(sc["mountOptions"])
    pv_spec["volumeMode"] = mode
    finalizers = [PROVISIONER_FINALIZER] if policy == "Delete" else []
    return {"apiVersion": "v1", "kind": PV,
            "metadata": {"name": name,
                         "annotations": {PROVISIONED_BY: driver, DELETION_SECRET_NAME: "",
                                         DELETION_SECRET_NAMESPACE: ""},
                         "finalizers": [*finalizers, PV_PROTECTION]},
            "spec": pv_spec, "status": {"phase": "Bound"}}


def _class_of(store: Store, claim: Obj) -> Obj | None:
    name = class_name(claim)
    return store.peek("StorageClass", None, name) if name else None


def provision(store: Store, claim: Obj) -> bool:
    """Give an unbound ``claim`` its volume and bind both (see the module doc). False when the
    claim names a volume that does not exist (it stays Pending)."""
    named = (claim.get("spec") or {}).get("volumeName")
    pv = store.peek(PV, None, named) if named else prebound(store, claim)
    if named and pv is None:
        return False
    if pv is None:
        from statemachine.sim import events  # events imports the store, which imports us
        sc = _class_of(store, claim)
        body = new_volume(claim, sc, volume_name(claim))
        driver = body["metadata"]["annotations"][PROVISIONED_BY]
        md = claim["metadata"]
        events.record(store, claim, "Normal", "ExternalProvisioning", EXTERNAL_PROVISIONING.format(
            driver), component=CONTROLLER_COMPONENT)
        provisioner = f"{driver}_{PROVISIONER_POD}_{_PROVISIONER_UID}"
        events.record(store, claim, "Normal", "Provisioning",
                      f'External provisioner is provisioning volume for claim '
                      f'"{md.get("namespace")}/{md["name"]}"', component=provisioner)
        with managedfields.acting_as(PROVISIONER_MANAGER):
            pv = store.create(PV, body, keep_status=True)
        events.record(store, claim, "Normal", "ProvisioningSucceeded",
                      f"Successfully provisioned volume {pv['metadata']['name']}",
                      component=provisioner)
        bind(store, pv, claim, provisioner=driver)
    else:
        bind(store, pv, claim)
    return True


def prebound(store: Store, claim: Obj) -> Obj | None:
    """A PV whose ``claimRef`` names ``claim`` (by namespace and name; its uid, when set, the
    claim's) and that is not being deleted: ``findMatchingVolume``'s first choice, taken before
    anything is provisioned."""
    md = claim["metadata"]
    for pv in store.peek_list(PV):
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if (ref.get("name"), ref.get("namespace")) == (md["name"], md.get("namespace")) \
                and ref.get("uid") in (None, "", md["uid"]) \
                and not pv["metadata"].get("deletionTimestamp"):
            return pv
    return None


def waiting_for_consumer(store: Store, claim: Obj) -> None:
    """The PV controller's event on a claim whose class binds on first consumer while none
    exists (recorded once per claim by the callers; upstream repeats it on every sync)."""
    from statemachine.sim import events
    events.record(store, claim, "Normal", "WaitForFirstConsumer",
                  "waiting for first consumer to be created before binding",
                  component=CONTROLLER_COMPONENT)


def bind(store: Store, pv: Obj, claim: Obj, *, provisioner: str = "") -> None:
    """The PV controller's ``bind``: the volume to the claim, its phase, the claim to the
    volume, the claim's status. ``provisioner``: the claim was provisioned for (its
    ``setClaimProvisioner`` annotations)."""
    md = claim["metadata"]
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    with managedfields.acting_as(CONTROLLER_MANAGER):
        if (ref.get("name"), ref.get("namespace"), ref.get("uid")) != (
                md["name"], md.get("namespace"), md["uid"]):
            def point(o: Obj) -> None:
                o["spec"]["claimRef"] = {
                    "kind": PVC, "namespace": md.get("namespace"), "name": md["name"],
                    "uid": md["uid"], "apiVersion": "v1",
                    "resourceVersion": md.get("resourceVersion", "")}
                if not ref:
                    o["metadata"].setdefault("annotations", {})[BOUND_BY_CONTROLLER] = "yes"
            pv = store.mutate(PV, None, pv["metadata"]["name"], point)
        if (pv.get("status") or {}).get("phase") != "Bound":
            pv = store.update_status(PV, None, pv["metadata"]["name"],
                                     {**(pv.get("status") or {}), "phase": "Bound"})
        pv_spec = pv.get("spec") or {}
        name = pv["metadata"]["name"]

        def bound(o: Obj) -> None:
            notes = o["metadata"].setdefault("annotations", {})
            if provisioner:
                notes[BETA_STORAGE_PROVISIONER] = provisioner
                notes[STORAGE_PROVISIONER] = provisioner
            spec = o.setdefault("spec", {})
            if spec.get("volumeName") != name:
                notes.setdefault(BOUND_BY_CONTROLLER, "yes")
                spec["volumeName"] = name
            notes.setdefault(BIND_COMPLETED, "yes")
            status = o.setdefault("status", {})
            status["phase"] = "Bound"
            status["accessModes"] = list(pv_spec.get("accessModes") or [])
            status["capacity"] = dict(pv_spec.get("capacity") or {})
        store.mutate(PVC, md.get("namespace"), md["name"], bound)


def sync_volume(store: Store, pv: Obj) -> bool:
    """One step of the PV controller, the deleter and the pv-protection controller on ``pv``
    (see the module doc). True when it should be looked at again next step."""
    md, spec = pv["metadata"], pv.get("spec") or {}
    name = md["name"]
    phase = (pv.get("status") or {}).get("phase")
    if md.get("deletionTimestamp"):
        fins = md.get("finalizers") or []
        if PROVISIONER_FINALIZER in fins and spec.get("persistentVolumeReclaimPolicy") == "Delete":
            with managedfields.acting_as(PROVISIONER_MANAGER):
                store.remove_finalizer(PV, None, name, PROVISIONER_FINALIZER)
            return True
        if PV_PROTECTION in fins and phase != "Bound":
            with managedfields.acting_as(CONTROLLER_MANAGER):
                store.remove_finalizer(PV, None, name, PV_PROTECTION)
        return False
    ref = spec.get("claimRef")
    with managedfields.acting_as(CONTROLLER_MANAGER):
        if not ref or not ref.get("uid"):
            _set_phase(store, pv, "Available")
            return False
        claim = store.peek(PVC, ref.get("namespace"), ref.get("name", ""))
        if claim is None or claim["metadata"].get("uid") != ref.get("uid"):
            if phase not in ("Released", "Failed"):
                _set_phase(store, pv, "Released")
                return True
            if spec.get("persistentVolumeReclaimPolicy") == "Delete" and \
                    PROVISIONED_BY in (md.get("annotations") or {}):
                # external-provisioner's deleteVolumeOperation: the backing volume, its
                # finalizer, then the object.
                with managedfields.acting_as(PROVISIONER_MANAGER):
                    store.remove_finalizer(PV, None, name, PROVISIONER_FINALIZER)
                    store.delete(PV, None, name)
                return True
            return False
        volume_name_ = (claim.get("spec") or {}).get("volumeName")
        if not volume_name_ or (volume_name_ == name and (claim.get("status") or {}).get(
                "phase") != "Bound"):
            bind(store, pv, claim)  # a provisioned volume whose claim is not bound yet
        elif volume_name_ == name:
            _set_phase(store, pv, "Bound")
    return False


def _set_phase(store: Store, pv: Obj, phase: str) -> None:
    if (pv.get("status") or {}).get("phase") != phase:
        store.update_status(PV, None, pv["metadata"]["name"],
                            {**(pv.get("status") or {}), "phase": phase}, copy=False)


def seed_volumes(store: Store) -> None:
    """Give every seeded ``Bound`` claim its PV (see the module doc: the decision)."""
    for claim in store.peek_list(PVC):
        if (claim.get("status") or {}).get("phase") != "Bound":
            continue
        named = (claim.get("spec") or {}).get("volumeName")
        pv = store.peek(PV, None, named) if named else prebound(store, claim)
        if pv is not None:
            # The author's pair: uids are the server's, so the PV's reference is completed
            # with the claim's (bind), and the claim's status filled from the PV.
            with managedfields.acting_as(CONTROLLER_MANAGER):
                _fill_claim_status(store, claim, pv)
                bind(store, pv, store.get(PVC, claim["metadata"].get("namespace"),
                                          claim["metadata"]["name"]))
            continue
        sc = _class_of(store, claim)
        with managedfields.acting_as(PROVISIONER_MANAGER):
            pv = store.create(PV, new_volume(claim, sc, named or volume_name(claim)),
                              keep_status=True)
        if named:
            def done(o: Obj) -> None:
                o["metadata"].setdefault("annotations", {}).setdefault(BIND_COMPLETED, "yes")
            with managedfields.acting_as(CONTROLLER_MANAGER):
                store.mutate(PVC, claim["metadata"].get("namespace"),
                             claim["metadata"]["name"], done)
                _fill_claim_status(store, claim, pv)
        else:
            bind(store, pv, claim, provisioner=pv["metadata"]["annotations"][PROVISIONED_BY])


def _fill_claim_status(store: Store, claim: Obj, pv: Obj) -> None:
    pv_spec = pv.get("spec") or {}

    def fill(o: Obj) -> None:
        status = o.setdefault("status", {})
        if not status.get("accessModes") and pv_spec.get("accessModes"):
            status["accessModes"] = list(pv_spec["accessModes"])
        if not status.get("capacity") and pv_spec.get("capacity"):
            status["capacity"] = dict(pv_spec["capacity"])
    store.mutate(PVC, claim["metadata"].get("namespace"), claim["metadata"]["name"], fill)
