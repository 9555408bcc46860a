"""Load a plan file (``smrun.io/v1alpha1``, kind ``Plan``) into frozen dataclasses.

``load_plan(path)`` parses the YAML (with line numbers), validates it against
``schemas/plan.schema.json``, runs the checks a schema cannot express (duplicate VMs, unknown hook
names, files that must exist, clusters required unless simulated), and returns a :class:`Plan`.
Every problem found is reported at once as ``<file>:<line>: <path>: <message>`` in a
:class:`~statemachine.errors.SchemaError`.

Decisions recorded here:

- ``type`` wins over the legacy ``warm`` flag; neither means ``cold`` (product.md §4).
- Paths in a plan (kubeconfig, itinerary, simulation seed, hook playbooks) are relative to the plan
  file, after ``~`` expansion. A ``spec.itinerary`` without ``/`` and without a ``.yaml``/``.yml``
  suffix names a built-in itinerary (kept as a ``str``); anything else is a file (a ``Path``).
- A missing ``kubeconfig`` falls back to the first entry of ``$KUBECONFIG``, else
  ``~/.kube/config``. Whether the file exists is not checked here (``validate`` must work
  offline); the cluster layer reports it when it connects.
- Hook playbooks are read at load time, so a missing playbook is a plan error and templates (which
  cannot read files: they are sandboxed) get the text.
- Durations are written as in itineraries (``30s``, ``10m``, ``1h30m`` or a number of seconds,
  parsed by ``durations.parse_duration``) and stored as seconds (``float``).

This module does not pick or load the itinerary, and does not talk to a cluster.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from statemachine import schema as _schema
from statemachine import yamlsource
from statemachine.errors import Problem, SchemaError
from statemachine.filekind import expect
from statemachine.k8s import default_kubeconfig
from statemachine.durations import parse_duration
from statemachine.yamlsource import DocPath, SourceDoc

# cold, warm and live are the built-in flows; a custom itinerary may name any DNS label.
MigrationType = str
# A playbook goes into a ConfigMap, whose data may not exceed 1 MiB in a real cluster.
PLAYBOOK_BYTES = 1024 * 1024

__all__ = ["ClusterRef", "Hook", "NetworkMapping", "Plan", "Settings", "Simulation", "StorageMapping",
           "VM", "VMHook", "load_plan", "load_plan_document"]

@dataclass(frozen=True)
class ClusterRef:
    """Where a cluster is: a kubeconfig file and a context in it (``None``: its current context)."""

    kubeconfig: Path | None
    context: str | None = None


@dataclass(frozen=True)
class Simulation:
    """Run against built-in simulated clusters seeded from ``seed`` instead of real ones."""

    seed: Path
    tick: float | None = None
    """Simulated controller step in seconds; ``None``: the simulator's default."""


@dataclass(frozen=True)
class StorageMapping:
    """Source storage class -> destination storage class (and optional access/volume mode)."""

    source: str
    storage_class: str
    access_mode: str | None = None
    volume_mode: str | None = None


@dataclass(frozen=True)
class NetworkMapping:
    """Source network (pod network, or a multus network by ``namespace/name``) -> destination."""

    source_type: str | None
    source_name: str | None
    destination_type: str
    destination_name: str | None = None


@dataclass(frozen=True)
class Hook:
    """A hook container run as a Job in a hook state (Forklift's Hook CR, inline)."""

    name: str
    image: str
    playbook: str | None = None
    """The playbook's text (read from the file the plan names), or ``None``."""
    playbook_path: Path | None = None
    service_account: str | None = None
    deadline: float | None = None
    """Seconds the hook Job may run; ``None``: the state's timeout."""


@dataclass(frozen=True)
class VMHook:
    """A hook bound to a VM at a step (state name), e.g. ``PreHook``."""

    step: str
    hook: Hook


@dataclass(frozen=True)
class VM:
    """One VM of the plan, with its target name and namespace resolved."""

    name: str
    namespace: str
    target_name: str
    target_namespace: str
    hooks: tuple[VMHook, ...] = ()
    cutover: str | None = None
    """RFC 3339 cutover time for warm migration: the VM's own, else the plan's, else ``None``."""

    @property
    def key(self) -> str:
        """``<namespace>-<name>``: unique within a plan (duplicates are rejected at load)."""
        return f"{self.namespace}-{self.name}"

    @property
    def ref(self) -> str:
        """``namespace/name`` as shown in status and events."""
        return f"{self.namespace}/{self.name}"

    @property
    def namespaces(self) -> dict[str, str]:
        """The VM's namespace on each of the plan's clusters, by the cluster's name (the plan's
        ``source`` and ``target``, the names itineraries and the engine give them): where it runs
        and where it goes. The one place that pairs a cluster with the VM's namespace there."""
        return {"source": self.namespace, "target": self.target_namespace}

    def hook_for(self, step: str) -> Hook | None:
        """The hook bound to ``step``, or ``None``."""
        return next((h.hook for h in self.hooks if h.step == step), None)


@dataclass(frozen=True)
class Settings:
    """Run settings with defaults applied. Durations are in seconds."""

    max_in_flight: int = 10
    """VMs migrated at the same time."""
    step_timeout: float = 1800.0
    """Default timeout of a state (actions + wait): 30m."""
    require_matching_instance_types: bool = False
    """Turn the 'instancetype differs on the target' preflight warning into a refusal."""
    precopy_interval: float = 3600.0
    """Warm: wait between the end of one precopy round and the start of the next (60m)."""
    max_precopy_rounds: int | None = None
    """Warm: cut over after this many rounds at the latest; ``None``: no limit."""
    max_consecutive_round_failures: int | None = None
    """Warm: fail the VM after this many failed rounds in a row; ``None``: the itinerary's default."""
    auto_cutover_delta_bytes: int | None = None
    """Warm: cut over early once a round's dirty bytes are at or below this."""
    cutover_method: str = "restartPaused"
    """Warm: ``restartPaused`` (manifest-only) or ``pause`` (pause subresource)."""
    export_ttl: str = "12h"
    """Cold: lifetime of a VirtualMachineExport, as a Kubernetes duration string."""
    import_restart_limit: int = 5
    """Cold: importer pod restarts before a DataVolume import counts as failed."""
    submariner: bool = False
    """Live: the clusters are connected by Submariner, so migration services are exported."""
    backup_ttl: str = "12h"
    """Warm: lifetime of each round's VirtualMachineBackup (Kubernetes duration); must outlast
    the copy."""
    scratch_storage_class: str | None = None
    """Warm: storage class of the source's pull-mode scratch PVC; ``None``: the default class."""
    scratch_size: str | None = None
    """Warm: size of the scratch PVC (a quantity); ``None``: the sum of the disks' sizes."""
    copy_image: str = "docker.io/library/python:3.12-slim"
    """Warm: image of the delta copy Jobs (any image with a Python 3 interpreter)."""
    copy_parallelism: int = 4
    """Warm: ranges a copy Job fetches at once."""
    quiesce_precopy: bool = False
    """Warm: freeze the guest for precopy rounds too (the final round is what must be consistent)."""

    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The settings as written in the plan (camelCase), before defaults."""


@dataclass(frozen=True)
class Plan:
    """A validated plan. ``path`` is the plan file; every other path in it is already resolved."""

    path: Path
    name: str
    type: MigrationType
    vms: tuple[VM, ...]
    itinerary: Path | str | None = None
    """A custom itinerary file, a built-in itinerary name, or ``None`` (the provider's for ``type``)."""
    provider: str = "kubevirt"
    source: ClusterRef = ClusterRef(None)
    target: ClusterRef = ClusterRef(None)
    simulation: Simulation | None = None
    target_namespace: str | None = None
    storage_map: tuple[StorageMapping, ...] = ()
    network_map: tuple[NetworkMapping, ...] = ()
    hooks: tuple[Hook, ...] = ()
    settings: Settings = Settings()
    cutover: str | None = None
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """``spec.parameters`` as written; after :func:`statemachine.parameters.bind_parameters`,
    every parameter the itinerary declares (defaults applied)."""
    parameters_at: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """``file:line: spec.parameters.NAME`` per name (``""``: the block itself), for errors."""
    type_at: str | None = None
    """``file:line: spec.type`` when the plan writes ``type`` (or ``warm``), else ``None``: the
    flow then comes from the itinerary, and a plan without ``spec.itinerary`` is ``cold``."""
    itinerary_at: str | None = field(default=None, compare=False, repr=False)
    """``file:line: spec.itinerary`` when the plan writes one, for errors about it."""

    def vm(self, name: str, namespace: str | None = None) -> VM:
        """The VM called ``name`` (``namespace/name`` or ``name`` with ``namespace``); KeyError if none."""
        if namespace is None and "/" in name:
            namespace, name = name.split("/", 1)
        for vm in self.vms:
            if vm.name == name and (namespace is None or vm.namespace == namespace):
                return vm
        raise KeyError(name if namespace is None else f"{namespace}/{name}")


def load_plan(path: str | Path) -> Plan:
    """Load, validate and resolve the plan file at ``path``.

    Raises :class:`SchemaError` (exit code 2) listing every problem found.
    """
    return load_plan_document(yamlsource.load(path), Path(path))


def load_plan_document(doc: SourceDoc, path: Path, *, base: Path | None = None) -> Plan:
    """Validate and resolve a parsed plan document: the checks of :func:`load_plan`, for a plan
    that is not a file (a Plan object in a cluster). ``path`` becomes ``Plan.path``; relative
    paths in the plan resolve against ``base`` (default: ``path``'s directory)."""
    if not isinstance(doc.data, dict):
        raise SchemaError("not a mapping", [doc.problem((), "a plan must be a YAML mapping")])
    expect(doc.data, doc.file, "Plan", doc.lines.get(("kind",)))
    _schema.validate_document(doc, "plan")
    return _Builder(doc, path, base).build()


class _Builder:
    """Turns a schema-valid document into a :class:`Plan`, collecting every semantic problem."""

    def __init__(self, doc: SourceDoc, path: Path, base: Path | None = None) -> None:
        self.doc = doc
        self.path = path
        self.base = base if base is not None else path.resolve().parent
        self.problems: list[Problem] = []

    def fail(self, at: DocPath, message: str) -> None:
        self.problems.append(self.doc.problem(at, message))

    def resolve(self, text: str) -> Path:
        candidate = Path(os.path.expanduser(text))
        # normpath, not resolve(): collapse `..` for readable messages, keep the user's symlinks.
        return Path(os.path.normpath(candidate if candidate.is_absolute() else self.base / candidate))

    def build(self) -> Plan:
        data: dict[str, Any] = self.doc.data
        spec: dict[str, Any] = data["spec"]
        simulation = self._simulation(spec.get("simulation"))
        hooks = self._hooks(spec.get("hooks", []))
        settings = self._settings(spec.get("settings", {}))
        cutover = self._timestamp(spec.get("cutover"), ("spec", "cutover"))
        plan_target_ns: str | None = spec.get("targetNamespace")
        vms = self._vms(spec["vms"], {h.name: h for h in hooks}, plan_target_ns, cutover)
        storage = tuple(StorageMapping(m["source"], m["destination"]["storageClass"],
                                       m["destination"].get("accessMode"),
                                       m["destination"].get("volumeMode"))
                        for m in spec.get("map", {}).get("storage", []))
        network = tuple(self._network(m, ("spec", "map", "network", i))
                        for i, m in enumerate(spec.get("map", {}).get("network", [])))
        self._unique([m.source for m in storage], ("spec", "map", "storage"), "storage class")
        source = self._cluster(spec, "source", simulation)
        target = self._cluster(spec, "target", simulation)
        itinerary = self._itinerary(spec.get("itinerary"))
        if self.problems:
            raise SchemaError(str(self.problems[0]), self.problems)
        return Plan(
            path=self.path, name=data["metadata"]["name"], type=_migration_type(spec), vms=vms,
            itinerary=itinerary, provider=spec.get("provider", "kubevirt"), source=source,
            target=target, simulation=simulation, target_namespace=plan_target_ns,
            storage_map=storage, network_map=network, hooks=hooks, settings=settings,
            cutover=cutover, description=data["metadata"].get("description", ""),
            type_at=self._type_at(spec), parameters=dict(spec.get("parameters") or {}),
            parameters_at=self._parameters_at(spec),
            itinerary_at=self._at(("spec", "itinerary")) if "itinerary" in spec else None)

    def _parameters_at(self, spec: Mapping[str, Any]) -> dict[str, str]:
        if "parameters" not in spec:
            return {}
        at: DocPath = ("spec", "parameters")
        out = {"": self._at(at)}
        for name in spec["parameters"] or {}:
            out[name] = self._at((*at, name))
        return out

    def _at(self, path: DocPath) -> str:
        line = self.doc.line(path)
        text = yamlsource.format_path(path)
        return f"{self.doc.file}:{line}: {text}" if line else f"{self.doc.file}: {text}"

    def _type_at(self, spec: Mapping[str, Any]) -> str | None:
        key = "type" if "type" in spec else "warm" if "warm" in spec else None
        if key is None:
            return None
        line = self.doc.line(("spec", key))
        return f"{self.doc.file}:{line}: spec.{key}" if line else f"{self.doc.file}: spec.{key}"

    def _cluster(self, spec: Mapping[str, Any], side: str, sim: Simulation | None) -> ClusterRef:
        raw = spec.get(side)
        if raw is None:
            if sim is None:
                self.fail(("spec",), f"{side} is required (or give spec.simulation)")
            return ClusterRef(None, None)
        if sim is not None:
            # A simulated plan gets its clusters from the simulator; a kubeconfig here would be
            # silently ignored, which is worse than refusing it.
            self.fail(("spec", side), "not allowed together with spec.simulation")
        kubeconfig = raw.get("kubeconfig")
        if kubeconfig is not None:
            return ClusterRef(self.resolve(kubeconfig), raw.get("context"))
        return ClusterRef(default_kubeconfig(), raw.get("context"))

    def _simulation(self, raw: Mapping[str, Any] | None) -> Simulation | None:
        if raw is None:
            return None
        seed = self.resolve(raw["seed"])
        if not seed.is_file():
            self.fail(("spec", "simulation", "seed"), f"file not found: {raw['seed']}")
        tick = raw.get("tick")
        return Simulation(seed, float(tick) if tick is not None else None)

    def _itinerary(self, raw: str | None) -> Path | str | None:
        if raw is None:
            return None
        if "/" not in raw and not raw.endswith((".yaml", ".yml")):
            return raw  # a built-in name; checked when the itinerary is loaded
        file = self.resolve(raw)
        if not file.is_file():
            self.fail(("spec", "itinerary"), f"file not found: {raw}")
        return file

    def _hooks(self, raw: Sequence[Mapping[str, Any]]) -> tuple[Hook, ...]:
        hooks = []
        for i, h in enumerate(raw):
            at: DocPath = ("spec", "hooks", i)
            text: str | None = None
            playbook_path: Path | None = None
            if "playbook" in h:
                playbook_path = self.resolve(h["playbook"])
                try:
                    # A playbook is YAML that ends up in a ConfigMap: the same input limits as
                    # every YAML file (size, characters, nesting, aliases), checked here.
                    text = yamlsource.read_text(playbook_path, what="playbook",
                                                limit=PLAYBOOK_BYTES)
                    yamlsource.load_all_text(text, str(playbook_path), limit=PLAYBOOK_BYTES)
                except SchemaError as exc:
                    why = _without_file(exc, str(playbook_path))
                    self.fail((*at, "playbook"),
                              f"cannot read playbook file {h['playbook']}" if why.startswith(": cannot read")
                              else f"playbook {h['playbook']}{why}")
                    text = None
            deadline = self._duration(h.get("deadline"), (*at, "deadline"))
            hooks.append(Hook(h["name"], h["image"], text, playbook_path, h.get("serviceAccount"),
                              deadline))
        self._unique([h.name for h in hooks], ("spec", "hooks"), "hook name")
        return tuple(hooks)

    def _settings(self, raw: Mapping[str, Any]) -> Settings:
        at: DocPath = ("spec", "settings")
        defaults = Settings()

        def seconds(key: str, default: float) -> float:
            value = self._duration(raw.get(key), (*at, key))
            return default if value is None else value

        step_timeout = seconds("stepTimeout", defaults.step_timeout)
        if step_timeout <= 0:
            # The engine would silently treat 0 as "unset" (30 minutes): say so instead.
            self.fail((*at, "stepTimeout"), "must be longer than 0s")
        return Settings(
            max_in_flight=raw.get("maxInFlight", defaults.max_in_flight),
            step_timeout=step_timeout,
            require_matching_instance_types=raw.get("requireMatchingInstanceTypes",
                                                    defaults.require_matching_instance_types),
            precopy_interval=seconds("precopyInterval", defaults.precopy_interval),
            max_precopy_rounds=raw.get("maxPrecopyRounds"),
            max_consecutive_round_failures=raw.get("maxConsecutiveRoundFailures"),
            auto_cutover_delta_bytes=raw.get("autoCutoverDeltaBytes"),
            cutover_method=raw.get("cutoverMethod", defaults.cutover_method),
            # Kept as a Kubernetes duration string: templates put it into VirtualMachineExport.
            export_ttl=_go_duration(raw.get("exportTTL", defaults.export_ttl)),
            import_restart_limit=raw.get("importRestartLimit", defaults.import_restart_limit),
            submariner=raw.get("submariner", defaults.submariner),
            backup_ttl=_go_duration(raw.get("backupTTL", defaults.backup_ttl)),
            scratch_storage_class=raw.get("scratchStorageClass"),
            scratch_size=raw.get("scratchSize"),
            copy_image=raw.get("copyImage", defaults.copy_image),
            copy_parallelism=raw.get("copyParallelism", defaults.copy_parallelism),
            quiesce_precopy=raw.get("quiescePrecopy", defaults.quiesce_precopy),
            raw=dict(raw))

    def _vms(self, raw: Sequence[Mapping[str, Any]], hooks: Mapping[str, Hook],
             plan_target_ns: str | None, plan_cutover: str | None) -> tuple[VM, ...]:
        vms: list[VM] = []
        seen: dict[tuple[str, str], int] = {}
        targets: dict[tuple[str, str], int] = {}
        for i, v in enumerate(raw):
            at: DocPath = ("spec", "vms", i)
            bound: list[VMHook] = []
            steps: set[str] = set()
            for j, b in enumerate(v.get("hooks", [])):
                hook = hooks.get(b["hook"])
                if hook is None:
                    known = ", ".join(sorted(hooks)) or "none defined in spec.hooks"
                    self.fail((*at, "hooks", j, "hook"), f"unknown hook {b['hook']!r} (known: {known})")
                    continue
                if b["step"] in steps:
                    self.fail((*at, "hooks", j, "step"), f"a hook is already bound to step {b['step']}")
                steps.add(b["step"])
                bound.append(VMHook(b["step"], hook))
            cutover = self._timestamp(v.get("cutover"), (*at, "cutover")) or plan_cutover
            vm = VM(name=v["name"], namespace=v["namespace"],
                    target_name=v.get("targetName", v["name"]),
                    target_namespace=v.get("targetNamespace") or plan_target_ns or v["namespace"],
                    hooks=tuple(bound), cutover=cutover)
            key = (vm.namespace, vm.name)
            target = (vm.target_namespace, vm.target_name)
            if key in seen:
                self.fail(at, f"duplicate VM {vm.ref} (also spec.vms[{seen[key]}])")
            elif target in targets:
                self.fail(at, f"target {target[0]}/{target[1]} is also the target of "
                              f"spec.vms[{targets[target]}]")
            seen.setdefault(key, i)
            targets.setdefault(target, i)
            vms.append(vm)
        return tuple(vms)

    def _network(self, m: Mapping[str, Any], at: DocPath) -> NetworkMapping:
        src, dst = m["source"], m["destination"]
        if dst["type"] == "multus" and "name" not in dst:
            self.fail((*at, "destination", "name"), "required when type is multus")
        if src.get("type") == "multus" and "name" not in src:
            self.fail((*at, "source", "name"), "required when type is multus")
        return NetworkMapping(src.get("type"), src.get("name"), dst["type"], dst.get("name"))

    def _duration(self, raw: str | int | None, at: DocPath) -> float | None:
        if raw is None:
            return None
        try:
            return parse_duration(raw)
        except ValueError as exc:  # the schema pattern catches these first; belt and braces
            self.fail(at, str(exc))
            return None

    def _timestamp(self, raw: str | None, at: DocPath) -> str | None:
        if raw is None:
            return None
        try:
            moment = datetime.fromisoformat(raw.replace("z", "Z"))
        except ValueError:
            self.fail(at, f"{raw!r} is not an RFC 3339 time such as 2026-12-01T02:00:00Z")
        if moment.tzinfo is None:
            self.fail(at, f"{raw!r} has no UTC offset (write 2026-12-01T02:00:00Z or +02:00)")
        # One form, UTC with Z: itineraries compare cutover times with now() as text.
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _unique(self, values: Sequence[str], at: DocPath, what: str) -> None:
        first: dict[str, int] = {}
        for i, value in enumerate(values):
            if value in first:
                self.fail((*at, i), f"duplicate {what} {value!r} (also {yamlsource.format_path((*at, first[value]))})")
            first.setdefault(value, i)


def _without_file(exc: SchemaError, file: str) -> str:
    """The problem of ``exc`` without its leading ``file`` (the caller names the file as the plan
    spells it): ``:1:13: forbidden character NUL ...`` or ``: larger than ...``."""
    text = str(exc.problems[0]) if exc.problems else str(exc)
    return text[len(file):] if text.startswith(file + ":") else f": {text}"


def _go_duration(value: str | int) -> str:
    return f"{value}s" if isinstance(value, int) else value


def _migration_type(spec: Mapping[str, Any]) -> MigrationType:
    if "type" in spec:
        kind: MigrationType = spec["type"]
        return kind
    return "warm" if spec.get("warm") else "cold"



