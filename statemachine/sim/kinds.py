"""The registry of kinds the simulated API server serves.

One :class:`Kind` per served resource, with the names discovery needs (plural, singular, short
names, list kind) and the two facts the store needs (namespaced, status subresource). Lookups by
``(apiVersion, kind)`` and by ``(group, version, plural)``. This module holds data only: it does
not validate objects (see ``admission.py``) nor decide who may touch them (see ``auth.py``).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from statemachine.sim.structural import StructuralSchema

VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Kind:
    """One served resource type."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    status_subresource: bool = False
    short_names: tuple[str, ...] = ()
    list_kind: str = ""
    verbs: tuple[str, ...] = VERBS_ALL
    #: Whether the kind is a custom resource (answers 415 to strategic merge patch).
    custom: bool = True
    #: Entries shaped as a CRD version's ``additionalPrinterColumns`` (name, type, jsonPath,
    #: optional description, format, priority). Empty: a custom resource prints NAME and AGE.
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    #: JSON paths as in a CRD version's ``selectableFields`` (e.g. ``.spec.nodeName``).
    selectable_fields: tuple[str, ...] = field(default=(), compare=False)
    #: Discovery categories (``all`` for ``kubectl get all``).
    categories: tuple[str, ...] = field(default=(), compare=False)
    #: The scale subresource of a CRD version: (specReplicasPath, statusReplicasPath,
    #: labelSelectorPath or ""), or ``None``.
    scale: tuple[str, str, str] | None = field(default=None, compare=False)
    #: The warning every request to this version gets (a CRD version marked ``deprecated``).
    deprecation: str = field(default="", compare=False)
    #: The structural schema of a kind served from a CRD; ``None``: built-in kinds (the shipped
    #: upstream data is used for KubeVirt/CDI kinds, see ``admission.schema_of``).
    schema: StructuralSchema | None = field(default=None, compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def qualified_resource(self) -> str:
        """``virtualmachines.kubevirt.io`` or ``configmaps``: the name used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"


def _k(group: str, version: str, kind: str, plural: str, *, namespaced: bool = True,
       status: bool = False, short: tuple[str, ...] = (), custom: bool = True,
       verbs: tuple[str, ...] = VERBS_ALL, columns: tuple[dict[str, Any], ...] = (),
       categories: tuple[str, ...] = (), scale: tuple[str, str, str] | None = None) -> Kind:
    return Kind(group=group, version=version, kind=kind, plural=plural, singular=kind.lower(),
                namespaced=namespaced, status_subresource=status, short_names=short,
                list_kind=f"{kind}List", verbs=verbs, custom=custom, printer_columns=columns,
                categories=categories, scale=scale)


def _col(name: str, type_: str, path: str, description: str = "",
         priority: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if description:
        out["description"] = description
    if priority:
        out["priority"] = priority
    return out


_AGE = _col("Age", "date", ".metadata.creationTimestamp")
_ALL = ("all",)


def _ready(condition: str, name: str = "Ready", priority: int = 0) -> dict[str, Any]:
    return _col(name, "string", f".status.conditions[?(@.type=='{condition}')].status",
                priority=priority)


# Printer columns as virt-operator and cdi-operator install them (kubevirt-fidelity.md §1.2, §1.3).
_VM_COLUMNS = (_AGE, _col("Status", "string", ".status.printableStatus", "Human Readable Status"),
               _ready("Ready"))
_VMI_COLUMNS = (_AGE, _col("Phase", "string", ".status.phase"),
                _col("IP", "string", ".status.interfaces[0].ipAddress"),
                _col("NodeName", "string", ".status.nodeName"), _ready("Ready"),
                _ready("LiveMigratable", "Live-Migratable", 1), _ready("Paused", "Paused", 1))
_VMIM_COLUMNS = (
    _col("Phase", "string", ".status.phase", "The current phase of VM instance migration"),
    _col("VMI", "string", ".spec.vmiName", "The name of the VMI to perform the migration on"))
_KV_COLUMNS = (_AGE, _col("Phase", "string", ".status.phase"))
_DV_COLUMNS = (
    _col("Phase", "string", ".status.phase", "The phase the data volume is in"),
    _col("Progress", "string", ".status.progress",
         "Transfer progress in percentage if known, N/A otherwise"),
    _col("Restarts", "integer", ".status.restartCount",
         "The number of times the transfer has been restarted."),
    _AGE)
_EXPORT_COLUMNS = (_col("SourceKind", "string", ".spec.source.kind"),
                   _col("SourceName", "string", ".spec.source.name"),
                   _col("Phase", "string", ".status.phase"))
_REPLICA_COLUMNS = (_col("Desired", "integer", ".spec.replicas"),
                   _col("Current", "integer", ".status.replicas"),
                   _col("Ready", "integer", ".status.readyReplicas"), _AGE)
_REPLICA_SCALE = (".spec.replicas", ".status.replicas", ".status.labelSelector")
_SNAPSHOT_TAIL = (_col("ReadyToUse", "boolean", ".status.readyToUse"),
                  _col("CreationTime", "date", ".status.creationTime"),
                  _col("Error", "string", ".status.error.message"))
_SNAPSHOT_COLUMNS = (_col("SourceKind", "string", ".spec.source.kind"),
                     _col("SourceName", "string", ".spec.source.name"),
                     _col("Phase", "string", ".status.phase"), *_SNAPSHOT_TAIL)
_RESTORE_COLUMNS = (_col("TargetKind", "string", ".spec.target.kind"),
                    _col("TargetName", "string", ".spec.target.name"),
                    _col("Complete", "boolean", ".status.complete"),
                    _col("RestoreTime", "date", ".status.restoreTime"))
_CLONE_COLUMNS = (_col("Phase", "string", ".status.phase"),
                  _col("SourceVirtualMachine", "string", ".spec.source.name"),
                  _col("TargetVirtualMachine", "string", ".spec.target.name"))
_BACKUP_COLUMNS = (_col("SourceKind", "string", ".spec.source.kind"),
                   _col("SourceName", "string", ".spec.source.name"),
                   _col("Type", "string", ".status.type"),
                   _col("CheckpointName", "string", ".status.checkpointName"))
_TRACKER_COLUMNS = (_col("SourceKind", "string", ".spec.source.kind"),
                    _col("SourceName", "string", ".spec.source.name"),
                    _col("LatestCheckpoint", "string", ".status.latestCheckpoint.name"),
                    _col("CheckpointTime", "date", ".status.latestCheckpoint.creationTime"))


KINDS: tuple[Kind, ...] = (
    # core v1
    _k("", "v1", "Namespace", "namespaces", namespaced=False, status=True, short=("ns",), custom=False),
    _k("", "v1", "Node", "nodes", namespaced=False, status=True, short=("no",), custom=False),
    _k("", "v1", "ConfigMap", "configmaps", short=("cm",), custom=False),
    _k("", "v1", "Secret", "secrets", custom=False),
    _k("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", status=True, short=("pvc",),
       custom=False),
    _k("", "v1", "PersistentVolume", "persistentvolumes", namespaced=False, status=True,
       short=("pv",), custom=False),
    _k("", "v1", "Pod", "pods", status=True, short=("po",), custom=False, categories=_ALL),
    _k("", "v1", "Event", "events", short=("ev",), custom=False),
    _k("", "v1", "Service", "services", status=True, short=("svc",), custom=False,
       categories=_ALL),
    _k("", "v1", "ServiceAccount", "serviceaccounts", short=("sa",), custom=False),
    # events.k8s.io/v1: a second view of the core Event storage (``events.py`` converts)
    _k("events.k8s.io", "v1", "Event", "events", short=("ev",), custom=False),
    # batch
    _k("batch", "v1", "Job", "jobs", status=True, custom=False, categories=_ALL),
    # rbac
    _k("rbac.authorization.k8s.io", "v1", "Role", "roles", custom=False),
    _k("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False,
       custom=False),
    _k("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", custom=False),
    _k("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
       namespaced=False, custom=False),
    # authorization: create-only, answered from RBAC, never stored
    _k("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
       namespaced=False, custom=False, verbs=("create",)),
    _k("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
       namespaced=False, custom=False, verbs=("create",)),
    _k("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews",
       namespaced=False, custom=False, verbs=("create",)),
    # apiextensions: CRDs (crd.py serves the kinds they define)
    _k("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
       namespaced=False, status=True, short=("crd", "crds"), custom=False),
    # coordination: Leases (leader election; `smrun operator` holds one per Plan)
    _k("coordination.k8s.io", "v1", "Lease", "leases", custom=False),
    # storage
    _k("storage.k8s.io", "v1", "StorageClass", "storageclasses", namespaced=False, short=("sc",),
       custom=False),
    # kubevirt
    _k("kubevirt.io", "v1", "VirtualMachine", "virtualmachines", status=True, short=("vm", "vms"),
       columns=_VM_COLUMNS, categories=_ALL),
    _k("kubevirt.io", "v1", "VirtualMachineInstance", "virtualmachineinstances", status=False,
       short=("vmi", "vmis"), columns=_VMI_COLUMNS, categories=_ALL),
    _k("kubevirt.io", "v1", "VirtualMachineInstanceMigration", "virtualmachineinstancemigrations",
       status=True, short=("vmim", "vmims"), columns=_VMIM_COLUMNS, categories=_ALL),
    _k("kubevirt.io", "v1", "VirtualMachineInstanceReplicaSet",
       "virtualmachineinstancereplicasets", status=True, short=("vmirs", "vmirss"),
       columns=_REPLICA_COLUMNS, categories=_ALL, scale=_REPLICA_SCALE),
    _k("pool.kubevirt.io", "v1beta1", "VirtualMachinePool", "virtualmachinepools", status=True,
       short=("vmpool", "vmpools"), columns=_REPLICA_COLUMNS, categories=_ALL,
       scale=_REPLICA_SCALE),
    # snapshot, restore, clone, migration policies
    _k("snapshot.kubevirt.io", "v1beta1", "VirtualMachineSnapshot", "virtualmachinesnapshots",
       status=True, short=("vmsnapshot", "vmsnapshots"), columns=_SNAPSHOT_COLUMNS,
       categories=_ALL),
    _k("snapshot.kubevirt.io", "v1beta1", "VirtualMachineSnapshotContent",
       "virtualmachinesnapshotcontents", status=True,
       short=("vmsnapshotcontent", "vmsnapshotcontents"), columns=_SNAPSHOT_TAIL,
       categories=_ALL),
    _k("snapshot.kubevirt.io", "v1beta1", "VirtualMachineRestore", "virtualmachinerestores",
       status=True, short=("vmrestore", "vmrestores"), columns=_RESTORE_COLUMNS,
       categories=_ALL),
    _k("clone.kubevirt.io", "v1beta1", "VirtualMachineClone", "virtualmachineclones",
       status=True, short=("vmclone", "vmclones"), columns=_CLONE_COLUMNS, categories=_ALL),
    _k("migrations.kubevirt.io", "v1alpha1", "MigrationPolicy", "migrationpolicies",
       namespaced=False, status=True),
    _k("kubevirt.io", "v1", "KubeVirt", "kubevirts", status=True, short=("kv", "kvs"),
       columns=_KV_COLUMNS, categories=_ALL),
    # instancetypes
    _k("instancetype.kubevirt.io", "v1beta1", "VirtualMachineInstancetype",
       "virtualmachineinstancetypes", short=("vminstancetype", "vminstancetypes", "vmf", "vmfs"),
       categories=_ALL),
    _k("instancetype.kubevirt.io", "v1beta1", "VirtualMachinePreference",
       "virtualmachinepreferences", short=("vmpref", "vmprefs", "vmp", "vmps"),
       categories=_ALL),
    _k("instancetype.kubevirt.io", "v1beta1", "VirtualMachineClusterInstancetype",
       "virtualmachineclusterinstancetypes", namespaced=False,
       short=("vmclusterinstancetype", "vmclusterinstancetypes", "vmcf", "vmcfs")),
    _k("instancetype.kubevirt.io", "v1beta1", "VirtualMachineClusterPreference",
       "virtualmachineclusterpreferences", namespaced=False,
       short=("vmcp", "vmcps")),
    # CDI
    _k("cdi.kubevirt.io", "v1beta1", "DataVolume", "datavolumes", status=True, short=("dv", "dvs"),
       columns=_DV_COLUMNS, categories=_ALL),
    _k("cdi.kubevirt.io", "v1beta1", "StorageProfile", "storageprofiles", namespaced=False,
       status=True),
    _k("cdi.kubevirt.io", "v1beta1", "DataSource", "datasources", short=("das",),
       categories=_ALL),
    _k("cdi.kubevirt.io", "v1beta1", "DataImportCron", "dataimportcrons", short=("dic", "dics"),
       columns=(_col("Format", "string", ".status.sourceFormat"),), categories=_ALL),
    # export
    _k("export.kubevirt.io", "v1", "VirtualMachineExport", "virtualmachineexports",
       status=True, short=("vmexport", "vmexports"), columns=_EXPORT_COLUMNS,
       categories=_ALL),
    # backup (warm-migration.md §4)
    _k("backup.kubevirt.io", "v1alpha1", "VirtualMachineBackup", "virtualmachinebackups",
       status=True, short=("vmbackup", "vmbackups"), columns=_BACKUP_COLUMNS,
       categories=_ALL),
    _k("backup.kubevirt.io", "v1alpha1", "VirtualMachineBackupTracker",
       "virtualmachinebackuptrackers", status=True, short=("vmbackuptracker", "vmbackuptrackers"),
       columns=_TRACKER_COLUMNS, categories=_ALL),
    # networking
    _k("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition", "network-attachment-definitions",
       short=("net-attach-def",)),
    _k("multicluster.x-k8s.io", "v1alpha1", "ServiceExport", "serviceexports", status=True,
       short=("svcex",)),
)


# eq=False: a registry is one cluster's (it changes as CRDs come and go), compared and hashed by
# identity.
@dataclass(frozen=True, eq=False)
class KindRegistry:
    """Indexes over a tuple of kinds. ``KindRegistry.default()`` serves :data:`KINDS`."""

    kinds: tuple[Kind, ...]
    _by_gvk: dict[tuple[str, str], Kind] = field(default_factory=dict, repr=False, compare=False)
    _by_gvr: dict[tuple[str, str, str], Kind] = field(default_factory=dict, repr=False,
                                                     compare=False)

    def __post_init__(self) -> None:
        for k in self.kinds:
            self._by_gvk[(k.api_version, k.kind)] = k
            self._by_gvr[(k.group, k.version, k.plural)] = k

    @classmethod
    def default(cls) -> KindRegistry:
        return _DEFAULT

    def __iter__(self) -> Iterator[Kind]:
        return iter(self.kinds)

    def by_kind(self, api_version: str, kind: str) -> Kind | None:
        """The kind for ``apiVersion``/``kind`` as written in a manifest, or ``None``."""
        return self._by_gvk.get((api_version, kind))

    def by_resource(self, group: str, version: str, plural: str) -> Kind | None:
        """The kind served at ``/apis/<group>/<version>/<plural>`` (group ``""`` = core), or ``None``."""
        return self._by_gvr.get((group, version, plural))

    def group_versions(self) -> dict[str, list[str]]:
        """``{group: [versions]}`` in registry order; the core group is ``""``."""
        out: dict[str, list[str]] = {}
        for k in self.kinds:
            versions = out.setdefault(k.group, [])
            if k.version not in versions:
                versions.append(k.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[Kind]:
        return [k for k in self.kinds if k.group == group and k.version == version]

    # The registry of one cluster changes when CRDs are created, changed or deleted
    # (``crd.py``); readers on other threads see either the old or the new tuple and index entry.
    def add(self, kind: Kind) -> None:
        """Serve ``kind``, replacing the kind at the same ``(group, version, plural)``."""
        gvr = (kind.group, kind.version, kind.plural)
        old = self._by_gvr.get(gvr)
        if old is not None:
            self._by_gvk.pop((old.api_version, old.kind), None)
            kinds = tuple(kind if k is old else k for k in self.kinds)
        else:
            kinds = (*self.kinds, kind)
        object.__setattr__(self, "kinds", kinds)
        self._by_gvk[(kind.api_version, kind.kind)] = kind
        self._by_gvr[gvr] = kind

    def remove(self, kind: Kind) -> None:
        """Stop serving the kind at ``kind``'s ``(group, version, plural)``."""
        old = self._by_gvr.pop((kind.group, kind.version, kind.plural), None)
        if old is None:
            return
        if self._by_gvk.get((old.api_version, old.kind)) is old:
            del self._by_gvk[(old.api_version, old.kind)]
        object.__setattr__(self, "kinds", tuple(k for k in self.kinds if k is not old))


_DEFAULT = KindRegistry(KINDS)


def lookup(api_version: str, kind: str) -> Kind:
    """The default registry's kind for ``apiVersion``/``kind``; ``KeyError`` if it is not served."""
    found = _DEFAULT.by_kind(api_version, kind)
    if found is None:
        raise KeyError(f"{api_version} {kind} is not served by the simulator")
    return found
