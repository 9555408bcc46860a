"""KubeVirt's admission webhooks (virt-api) as the simulated API server runs them.

kubevirt-fidelity.md §3. Mutating first, then validating, on every create and update that comes
through the API (dry runs included: the webhooks declare ``sideEffects: None``):

- VirtualMachineInstanceMigration create: label ``kubevirt.io/vmi-name`` and finalizer
  ``kubevirt.io/migrationJobFinalize`` (``migrations-mutator``); then the checks of
  ``migration-create-validator`` in upstream's order: vmiName, priority, VMI exists, VMI not
  final, VMI live-migratable, no other in-flight migration for the VMI, decentralized fields.
  Update: the spec is frozen, and the selector label may not be removed or changed in flight.
- VirtualMachine create/update (``virtualmachine-validator``): ``running`` xor ``runStrategy``, a
  known run strategy, a template, memory for dedicated CPUs.
- VirtualMachineInstance create: ``virtualmachineinstances-mutator`` (finalizer
  ``kubevirt.io/foregroundDeleteVirtualMachine``, ``status.phase: Pending`` with its transition
  timestamp, ``runtimeUser``, ``guestOSInfo``, ``memory`` and ``currentCPUTopology``) and
  ``virtualmachineinstances-create-validator``'s mandatory memory; update: the spec may not change (``virtualmachineinstances-update-validator``; every API user here is a
  non-KubeVirt user, the simulated controllers write to the store directly).
- DataVolume (CDI's ``datavolume-validate``): create is refused when a PVC of its name exists
  that CDI did not make for it, then by the first problem of its spec (:func:`dv_spec_problem`:
  storage definition, size, access modes, source, URLs); update: the spec is frozen
  (checkpoints of a VDDK/imageio multi-stage import excepted).
- Jobs get the batch registry's create defaults (``jobdefaults.py``), which need the uid the
  object will have: :func:`default_job` returns it.

:func:`hook` is the store's admission hook: the schema admission first (decoding with strict
field validation, pruning, validation), then these webhooks, for writes made while serving an API
request only (the simulated controllers write to the store directly, as KubeVirt's own service
accounts pass the webhooks).

A denial is :class:`Denied`: the Status the kube-apiserver returns for a webhook's answer, its
message prefixed ``admission webhook "<name>" denied the request: ``; code 400 with no reason for
a single error, 422 ``Invalid`` with ``details.causes`` for field causes.

What it does not do: instancetype/preference expansion and conflicts, network and storage
admitters, preset application, the VMI status revert for non-KubeVirt users, warnings headers.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from statemachine.errors import PermanentClusterError
from statemachine.sim import admission, jobdefaults
from statemachine.sim.controllers import instancetype, vmistatus
from statemachine.sim.controllers.conditions import parse_quantity
from statemachine.sim.kinds import Kind
from statemachine.sim.store import Obj, Store, now_rfc3339

VMIM_CREATE = "migration-create-validator.kubevirt.io"
VMIM_UPDATE = "migration-update-validator.kubevirt.io"
VM_VALIDATOR = "virtualmachine-validator.kubevirt.io"
VMI_CREATE = "virtualmachineinstances-create-validator.kubevirt.io"
VMI_UPDATE = "virtualmachineinstances-update-validator.kubevirt.io"

VMI_NAME_LABEL = "kubevirt.io/vmi-name"
MIGRATION_FINALIZER = "kubevirt.io/migrationJobFinalize"
VMI_FINALIZER = "kubevirt.io/foregroundDeleteVirtualMachine"
RUN_STRATEGIES = ("Always", "Halted", "Manual", "RerunOnFailure", "Once", "WaitAsReceiver")
FINAL = ("Succeeded", "Failed")
NO_MEMORY = ("no memory requested, at least one of 'spec.domain.memory.guest', "
             "'spec.domain.memory.hugepages.pageSize' or 'spec.domain.resources.requests.memory' "
             "must be set")
_WATCHED = ("VirtualMachineInstanceMigration", "VirtualMachine", "VirtualMachineInstance")
DV_VALIDATOR = "datavolume-validate.cdi.kubevirt.io"
POPULATED_FOR = "cdi.kubevirt.io/storage.populatedFor"


class Denied(PermanentClusterError):
    """A webhook's refusal, carrying the whole Status (``status_details`` may be empty)."""

    empty_reason = True

    def __init__(self, webhook: str, message: str, *, status: int = 400, reason: str = "",
                 causes: list[dict[str, str]] | None = None) -> None:
        super().__init__(f'admission webhook "{webhook}" denied the request: {message}',
                         status=status, reason=reason)
        self.status_details: dict[str, Any] = {"causes": causes} if causes else {}


def _causes(webhook: str, causes: list[dict[str, str]]) -> Denied:
    """422 from field causes (KubeVirt's ``ToAdmissionResponse``)."""
    message = ", ".join(c["message"] for c in causes[:10])
    if len(causes) > 10:
        message += f", and {len(causes) - 10} more validation errors"
    return Denied(webhook, message, status=422, reason="Invalid", causes=causes[:10])


def _cause(ctype: str, message: str, field: str = "") -> dict[str, str]:
    cause = {"reason": ctype, "message": message}
    if field:
        cause["field"] = field
    return cause


def watches(kind: Kind) -> bool:
    """Whether updates of ``kind`` go through a webhook here (a patch is then dry-run first)."""
    return (kind.group == "kubevirt.io" and kind.kind in _WATCHED) or \
        (kind.group == "cdi.kubevirt.io" and kind.kind == "DataVolume")


# ---------------------------------------------------------------------- entry points
Hook = Callable[[Kind, Obj, "Obj | None", "str | None"], None]


def hook(store: Store, schema_admission: Hook) -> Hook:
    """The store's admission hook: ``schema_admission``, then the webhooks (API requests only)."""
    def run(kind: Kind, new: Obj, old: Obj | None, subresource: str | None) -> None:
        schema_admission(kind, new, old, subresource)
        if subresource or not watches(kind) or not admission.in_request():
            return
        if old is None:
            admit_create(store, kind, new)
        else:
            admit_update(store, kind, old, new)
    return run


def default_job(body: Obj) -> str:
    """A Job's create defaults; returns the uid the Job is to be stored with."""
    uid = str(uuid.uuid4())
    jobdefaults.default(body, uid)
    return uid


def admit_create(store: Store, kind: Kind, body: Obj) -> None:
    """Mutate ``body`` in place and validate it. Raises :class:`Denied`."""
    ns = (body.get("metadata") or {}).get("namespace") or "default"
    if kind.kind == "VirtualMachineInstanceMigration":
        mutate_migration(body)
        validate_migration_create(store, ns, body)
    elif kind.kind == "VirtualMachine":
        mutate_vm(body, create=True)
        validate_vm(body, store)
    elif kind.kind == "VirtualMachineInstance":
        mutate_vmi(body)
        validate_vmi_create(body)
    elif kind.kind == "DataVolume":
        validate_dv_create(store, ns, body)


def admit_update(store: Store, kind: Kind, old: Obj, new: Obj) -> None:
    """Validate an update of a watched kind (``new`` is the would-be object). Raises
    :class:`Denied`."""
    if kind.kind == "VirtualMachineInstanceMigration":
        validate_migration_update(old, new)
    elif kind.kind == "VirtualMachine":
        mutate_vm(new, create=False)
        validate_vm(new, store)
    elif kind.kind == "DataVolume":
        validate_dv_update(old, new)
    elif kind.kind == "VirtualMachineInstance":
        if (new.get("spec") or {}) != (old.get("spec") or {}):
            raise _causes(VMI_UPDATE, [_cause("FieldValueNotSupported",
                                              "update of VMI object is restricted")])


# ---------------------------------------------------------------------- migrations
def mutate_migration(body: Obj) -> None:
    md = body.setdefault("metadata", {})
    md.setdefault("labels", {})[VMI_NAME_LABEL] = str((body.get("spec") or {}).get("vmiName", ""))
    fins = md.setdefault("finalizers", [])
    if MIGRATION_FINALIZER not in fins:
        fins.append(MIGRATION_FINALIZER)


def _feature_gates(store: Store) -> list[str]:
    for kv in store.list("KubeVirt"):
        config = (kv.get("spec") or {}).get("configuration") or {}
        return list((config.get("developerConfiguration") or {}).get("featureGates") or [])
    return []


def validate_migration_create(store: Store, namespace: str, body: Obj) -> None:
    spec = body.get("spec") or {}
    vmi_name = str(spec.get("vmiName") or "")
    if not vmi_name:
        raise _causes(VMIM_CREATE, [_cause("FieldValueRequired", "vmiName is missing",
                                           "spec.vmiName")])
    if spec.get("priority"):
        raise _causes(VMIM_CREATE, [_cause(
            "FieldValueForbidden", "Migration priority queue, only virt-controller is allowed "
            "to set priority field", "spec.migrationPriority")])
    vmi = store.try_get("VirtualMachineInstance", namespace, vmi_name)
    if vmi is None:
        raise Denied(VMIM_CREATE, f'the VMI "{namespace}/{vmi_name}" does not exist')
    status = vmi.get("status") or {}
    if status.get("phase") in FINAL:
        raise Denied(VMIM_CREATE, "Cannot migrate VMI in finalized state.")
    decentralized = bool(spec.get("sendTo") or spec.get("receive"))
    for cond in status.get("conditions") or []:
        if cond.get("type") == "LiveMigratable" and cond.get("status") == "False" and not (
                cond.get("reason") == "DisksNotLiveMigratable" and decentralized):
            raise Denied(VMIM_CREATE, f"Cannot migrate VMI, Reason: {cond.get('reason', '')}, "
                                      f"Message: {cond.get('message', '')}")
    for other in store.list("VirtualMachineInstanceMigration", namespace,
                            label_selector=f"{VMI_NAME_LABEL}={vmi_name}"):
        if (other.get("status") or {}).get("phase") not in FINAL:
            raise Denied(VMIM_CREATE, "in-flight migration detected. Active migration job "
                                      f"({other['metadata']['uid']}) is currently already in "
                                      f"progress for VMI {vmi_name}.")
    if decentralized and "DecentralizedLiveMigration" not in _feature_gates(store):
        raise _causes(VMIM_CREATE, [_cause(
            "FieldValueNotSupported", "DecentralizedLiveMigration feature gate is not enabled "
            "in kubevirt resource", "spec.sendTo" if spec.get("sendTo") else "spec.receive")])
    send_id = (spec.get("sendTo") or {}).get("migrationID")
    receive_id = (spec.get("receive") or {}).get("migrationID")
    if spec.get("sendTo") and spec.get("receive") and send_id != receive_id:
        raise _causes(VMIM_CREATE, [_cause(
            "FieldValueInvalid", f"sendTo migrationID {send_id} does not match receive "
            f"migrationID {receive_id}", "spec")])


def validate_migration_update(old: Obj, new: Obj) -> None:
    if (new.get("spec") or {}) != (old.get("spec") or {}):
        raise _causes(VMIM_UPDATE, [_cause("FieldValueInvalid",
                                           "update of Migration object's spec is restricted",
                                           "spec")])
    if (old.get("status") or {}).get("phase") in FINAL:
        return
    before = ((old.get("metadata") or {}).get("labels") or {}).get(VMI_NAME_LABEL)
    after = ((new.get("metadata") or {}).get("labels") or {}).get(VMI_NAME_LABEL)
    if before is None or before == after:
        return
    message = ("selector label can't be removed from an in-flight migration" if after is None
               else "selector label can't be modified on an in-flight migration")
    raise _causes(VMIM_UPDATE, [_cause("FieldValueInvalid", message,
                                       f"metadata.labels.{VMI_NAME_LABEL}")])


# ---------------------------------------------------------------------- VMs and VMIs
def mutate_vm(vm: Obj, *, create: bool) -> None:
    """``virtualmachines-mutator`` (vm-mutator.go, defaults.go): on create a random firmware
    ``uuid`` and ``serial`` where the template has none; on create and update the template's
    ``architecture`` (amd64) and machine type (the cluster default, q35) where empty."""
    template = (vm.get("spec") or {}).get("template")
    if not isinstance(template, dict):
        return
    spec = template.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    domain = spec.setdefault("domain", {})
    if not isinstance(domain, dict):
        return
    if create:
        firmware = domain.setdefault("firmware", {})
        if isinstance(firmware, dict):
            firmware.setdefault("uuid", str(uuid.uuid4()))
            firmware.setdefault("serial", str(uuid.uuid4()))
    spec.setdefault("architecture", "amd64")
    machine = domain.setdefault("machine", {})
    if isinstance(machine, dict) and not machine.get("type"):
        machine["type"] = "q35"


def validate_vm(vm: Obj, store: Store | None = None) -> None:
    """``virtualmachine-validator``: first the instancetype's conflicts (the admitter answers
    with those alone), then the spec's rules."""
    if (vm.get("metadata") or {}).get("deletionTimestamp"):
        return
    if store is not None:
        clashes = instancetype.conflicts(store, vm)
        if clashes:
            raise _causes(VM_VALIDATOR, [_cause(
                "FieldValueInvalid", f"VM field(s) {path} conflicts with selected instance type",
                path) for path in clashes])
    spec = vm.get("spec") or {}
    causes = []
    if "running" in spec and spec.get("running") is not None and spec.get("runStrategy"):
        causes.append(_cause("FieldValueInvalid",
                             "Running and RunStrategy are mutually exclusive. Note that Running "
                             "is deprecated, please use RunStrategy instead", "spec.running"))
    elif spec.get("running") is None and not spec.get("runStrategy"):
        causes.append(_cause("FieldValueRequired", "RunStrategy must be specified",
                             "spec.running"))
    strategy = spec.get("runStrategy")
    if strategy and strategy not in RUN_STRATEGIES:
        causes.append(_cause("FieldValueInvalid", f"Invalid RunStrategy ({strategy})",
                             "spec.runStrategy"))
    template = spec.get("template")
    if not template:
        causes.append(_cause("FieldValueRequired", "missing virtual machine template.",
                             "spec.template"))
    elif ((template.get("spec") or {}).get("domain") or {}).get("cpu", {}).get(
            "dedicatedCPUPlacement") and not _has_memory(template.get("spec") or {}, True):
        causes.append(_cause(
            "FieldValueRequired",
            "spec.template.spec.domain.resources.requests.memory, spec.template.spec.domain."
            "resources.limits.memory, spec.template.spec.domain.memory.hugepages or spec."
            "template.spec.domain.memory.guest should be provided",
            "spec.template.spec.domain.resources.requests.memory"))
    if causes:
        raise _causes(VM_VALIDATOR, causes)


def _has_memory(vmi_spec: dict[str, Any], limits_count: bool = False) -> bool:
    domain = vmi_spec.get("domain") or {}
    memory = domain.get("memory") or {}
    resources = domain.get("resources") or {}
    if memory.get("guest") or memory.get("hugepages"):
        return True
    if (resources.get("requests") or {}).get("memory"):
        return True
    return bool(limits_count and (resources.get("limits") or {}).get("memory"))


def mutate_vmi(body: Obj) -> None:
    """``virtualmachineinstances-mutator`` on create."""
    md = body.setdefault("metadata", {})
    fins = md.setdefault("finalizers", [])
    if VMI_FINALIZER not in fins:
        fins.append(VMI_FINALIZER)
    status = body.setdefault("status", {})
    if not isinstance(status, dict):
        status = body["status"] = {}
    # runtimeUser, guestOSInfo, memory, currentCPUTopology (vmistatus.mutator_fields).
    status.update(vmistatus.mutator_fields(body.get("spec") or {}))
    status["phase"] = "Pending"
    status["phaseTransitionTimestamps"] = [{"phase": "Pending",
                                            "phaseTransitionTimestamp": now_rfc3339()}]


def validate_vmi_create(body: Obj) -> None:
    if not _has_memory(body.get("spec") or {}):
        raise _causes(VMI_CREATE, [_cause("FieldValueRequired", NO_MEMORY)])


# ---------------------------------------------------------------------- CDI DataVolumes
def _cdi_denied(causes: list[dict[str, str]]) -> Denied:
    """CDI's rejection: 422 without a reason, the causes' messages each prefixed by a space
    (``toRejectedAdmissionResponse``)."""
    return Denied(DV_VALIDATOR, "".join(f" {c['message']}" for c in causes), status=422,
                  causes=causes)


def validate_dv_create(store: Store, namespace: str, body: Obj) -> None:
    """``datavolume-validate`` on create: a PVC of the DataVolume's name, which CDI did not make
    for it (no ``storage.populatedFor`` naming it, no DataVolume controller owner), refuses the
    DataVolume; then the first problem :func:`dv_spec_problem` finds."""
    name = (body.get("metadata") or {}).get("name") or ""
    pvc = store.peek("v1/PersistentVolumeClaim", namespace, name) if name else None
    meta = (pvc or {}).get("metadata") or {}
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if pvc is not None and (meta.get("annotations") or {}).get(POPULATED_FOR) != name and (
            owner is None or owner.get("kind") != "DataVolume"):
        raise _cdi_denied([_cause("FieldValueDuplicate",
                                  f"Destination PVC {namespace}/{name} already exists",
                                  "DataVolume.Name")])
    spec = body.get("spec")
    problem = dv_spec_problem(spec if isinstance(spec, dict) else {})
    if problem is not None:
        raise _cdi_denied([problem])


_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
_MIB = 1 << 20
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def _bad_url(url: Any) -> str:
    """CDI's ``validateSourceURL`` (Go's ``url.ParseRequestURI``, then http/https/gs): the
    problem, or ""."""
    if not url:
        return "source URL is empty"
    text = str(url)
    found = _URL_SCHEME.match(text)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in text) or (
            found is None and not text.startswith("/")):
        return f"Invalid source URL: {text}"
    if (found.group(1) if found else "") not in ("http", "https", "gs"):
        return f"Invalid source URL scheme: {text}"
    return ""


def dv_spec_problem(spec: Obj) -> dict[str, str] | None:
    """The first cause ``datavolume-validate``'s ``validateDataVolumeSpec`` finds, in its order
    (CDI stops at the first): storage definition, size, class name length, access modes, then
    the source. Not checked: externally populated DataVolumes (``dataSource``/``dataSourceRef``
    end the checks here, as there), checksums, a clone's source contents."""
    invalid = "FieldValueInvalid"
    pvc, storage = spec.get("pvc"), spec.get("storage")
    if pvc is None and storage is None:
        return _cause(invalid, "Missing Data volume PVC", "spec.PVC")
    if pvc is not None and storage is not None:
        return _cause(invalid, "Duplicate storage definition, both target storage and target "
                               "pvc defined", "spec.PVC.Storage")
    target = pvc if pvc is not None else storage
    target = target if isinstance(target, dict) else {}
    label = "PVC" if pvc is not None else "Storage"
    source = spec.get("source") if isinstance(spec.get("source"), dict) else None
    ref = spec.get("sourceRef")
    size_field = f"spec.{label}.resources.requests.size"
    requests = (target.get("resources") or {}).get("requests") or {}
    if "storage" in requests:
        size = parse_quantity(requests["storage"])
        if size <= 0:
            return _cause(invalid, f"{label} size can't be equal or less than zero", size_field)
        if size < _MIB:
            return _cause(invalid, f"{label} size should be at least 1MiB", size_field)
    else:
        clone = ref is not None or (source is not None and (
            source.get("pvc") is not None or source.get("snapshot") is not None))
        if pvc is not None or not clone:
            return _cause(invalid, f"{label} size is missing", size_field)
    if len(str(target.get("storageClassName") or "")) > 253:
        return _cause(invalid, "Name cannot be longer than 253 characters")
    modes = target.get("accessModes") or []
    unsupported = (f'Unsupported value: "{modes[0] if modes else ""}": supported values: '
                   '"ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"')
    if pvc is not None:
        if not modes:
            return _cause(invalid, "Required value: at least 1 access mode is required",
                          "spec.PVC.accessModes")
        if len(modes) > 1:
            return _cause(invalid, "PVC multiple accessModes", "spec.PVC.accessModes")
    if any(mode not in _MODES for mode in modes):
        return _cause(invalid, unsupported, "spec.PVC.accessModes")  # [0], as CDI prints it
    if target.get("dataSource") is not None or target.get("dataSourceRef") is not None:
        return None
    if (source is None) == (ref is None):
        return _cause(invalid, "Data volume should have either Source or SourceRef, or be "
                               "externally populated", "spec.source")
    if isinstance(ref, dict):
        if not ref.get("kind"):
            return _cause(invalid, "Missing sourceRef kind", "spec.sourceRef.Kind")
        if ref["kind"] != "DataSource":
            return _cause(invalid, f"Unsupported sourceRef kind {ref['kind']}, currently only "
                                   "DataSource is supported", "spec.sourceRef.Kind")
        if not ref.get("name"):
            return _cause(invalid, "Missing sourceRef name", "spec.sourceRef.Name")
        return None
    assert source is not None
    count = sum(1 for value in source.values() if value is not None)
    if count != 1:
        return _cause(invalid, "Missing Data volume source" if count == 0
                      else "Multiple Data volume sources", "spec.source")
    content = spec.get("contentType") or ""
    if content not in ("", "kubevirt", "archive"):
        return _cause(invalid, "ContentType not one of: kubevirt, archive", "spec.contentType")
    for key, label_ in (("http", "HTTP"), ("s3", "S3"), ("gcs", "GCS")):
        if isinstance(source.get(key), dict) and (bad := _bad_url(source[key].get("url"))):
            return _cause(invalid, f"spec.source {bad}", f"spec.source.{label_}.url")
    if source.get("blank") is not None and content == "archive":
        return _cause(invalid, "SourceType cannot be blank and the contentType be archive",
                      "spec.contentType")
    registry = source.get("registry")
    if isinstance(registry, dict):
        if content not in ("", "kubevirt"):
            return _cause(invalid, "ContentType must be kubevirt when Source is Registry",
                          "spec.contentType")
        url, stream = registry.get("url"), registry.get("imageStream")
        if (url is None) == (stream is None):
            return _cause(invalid, "Source registry should have either URL or ImageStream",
                          "spec.source.Registry")
        found = _URL_SCHEME.match(str(url)) if url is not None else None
        if url is not None and (found is None or found.group(1) not in ("docker", "oci")):
            return _cause(invalid, f"Illegal registry source URL scheme {url}",
                          "spec.source.Registry.URL")
        method = registry.get("pullMethod")
        if method is not None and method not in ("pod", "node"):
            return _cause(invalid, f'ImportMethod {method} is neither pod, node or ""',
                          "spec.source.Registry.importMethod")
        if stream is not None and stream == "":
            return _cause(invalid, "Source registry ImageStream is not valid",
                          "spec.source.Registry.importMethod")
        if stream is not None and method != "node":
            return _cause(invalid, "Source registry ImageStream is supported only with node "
                                   "pull import method", "spec.source.Registry.importMethod")
    imageio = source.get("imageio")
    if isinstance(imageio, dict):
        if not imageio.get("secretRef") or not imageio.get("diskId"):
            return _cause(invalid, "spec.source.Imageio source Imageio is not valid",
                          "spec.source.Imageio")
        if not imageio.get("certConfigMap") and imageio.get("insecureSkipVerify") is not True:
            return _cause(invalid, "spec.source.Imageio source Imageio requires CertConfigMap "
                                   "or InsecureSkipVerify", "spec.source.Imageio")
        if bad := _bad_url(imageio.get("url")):
            return _cause(invalid, f"spec.source {bad}", "spec.source.ImageIO.url")
    vddk = source.get("vddk")
    if isinstance(vddk, dict):
        if not all(vddk.get(k) for k in ("secretRef", "uuid", "backingFile", "thumbprint")):
            return _cause(invalid, "spec.source.VDDK source VDDK is not valid",
                          "spec.source.VDDK")
        if bad := _bad_url(vddk.get("url")):
            return _cause(invalid, f"spec.source {bad}", "spec.source.VDDK.url")
    # A missing namespace of a clone source is the DataVolume's (CDI's mutating webhook).
    for key, what, word in (("pvc", "PVC", "PVC"), ("snapshot", "Snapshot", "snapshot")):
        if isinstance(source.get(key), dict) and not source[key].get("name"):
            return _cause(invalid, f"spec.source.{what} source {word} is not valid",
                          f"spec.source.{what}")
    return None


def validate_dv_update(old: Obj, new: Obj) -> None:
    """A DataVolume's spec is frozen, except the checkpoints of a multi-stage (VDDK or imageio)
    import."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec == new_spec:
        return
    source = new_spec.get("source") or {}
    if new_spec.get("checkpoints") and (source.get("vddk") or source.get("imageio")):
        def rest(spec: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in spec.items() if k not in ("checkpoints", "finalCheckpoint")}
        if rest(old_spec) == rest(new_spec):
            return
    raise _cdi_denied([_cause("FieldValueDuplicate", "Cannot update DataVolume Spec",
                              "DataVolume.Spec")])
