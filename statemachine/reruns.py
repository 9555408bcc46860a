"""Re-runs made explicit: which clusters a journal belongs to, a finished plan, ``--new-run``.

``smrun run`` records each cluster's identity in the journal's ``run_started`` entry
(``clusters: {source: {server, uid}, target: {...}}``: the API server URL and the uid of the
``kube-system`` namespace, which a cluster keeps for its lifetime and a new cluster does not
share). On the next ``smrun run`` of the plan:

- a journal written against other clusters is refused before anything is applied
  (:func:`check_same_clusters`);
- a journal whose every VM completed is reported as such, with how to start over
  (:func:`completed_line`), and nothing runs;
- ``--new-run`` keeps the old journal beside the new one as history (:func:`start_new_run`);
- preflight checks only what the run will start (again): :func:`preflight_scope`, for ``smrun
  run`` and the operator alike.

A journal written before identities were recorded resumes as before, with a warning. This module
reads clusters (one GET each) and renames a file; it applies nothing and prints nothing.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statemachine.engine.journal import Replay, new_run_id
from statemachine.errors import PermanentClusterError, UsageError, state_dir_error
from statemachine.k8s import Cluster, ObjectRef
from statemachine.plan import VM, Plan

if TYPE_CHECKING:
    from statemachine.engine.preflight import ClusterReads, Findings
    from statemachine.itinerary import Itinerary

__all__ = ["Identity", "PreflightScope", "check_same_clusters", "completed_line", "identities",
           "preflight_scope", "start_new_run"]

#: Per cluster name: ``server`` (API server URL) and ``uid`` (of kube-system; ``None``: unknown).
Identity = dict[str, dict[str, str | None]]

KUBE_SYSTEM = ObjectRef("v1", "Namespace", "", "kube-system")


def identities(clusters: Mapping[str, Cluster], servers: Mapping[str, str]) -> Identity:
    """Each cluster's server URL and kube-system uid (``None`` when the user may not read it)."""
    out: Identity = {}
    for name, cluster in clusters.items():
        uid: str | None = None
        try:
            found = cluster.fetch(KUBE_SYSTEM)
        except PermanentClusterError:  # Forbidden: identity unknown, the server URL still counts
            found = None
        if found is not None:
            uid = str((found.get("metadata") or {}).get("uid") or "") or None
        # A kubeconfig plan's Connection has no ``servers``: the client knows its own URL.
        server = servers.get(name) or getattr(cluster, "server", None)
        out[name] = {"server": str(server) if server else None, "uid": uid}
    return out


def check_same_clusters(replay: Replay, now: Identity, journal: Path) -> list[str]:
    """Raise :class:`UsageError` when ``replay``'s journal was written against other clusters
    (a different server or kube-system uid, where both are known); else the warnings to show."""
    if replay.run_id is None:
        return []  # no journal yet: a first run
    was: Any = replay.clusters
    if not isinstance(was, Mapping):
        return [f"{journal}: the journal does not record which clusters it was written against "
                "(an older smrun); resuming it against these clusters as they are"]
    warnings: list[str] = []
    for name in sorted(now):
        recorded = was.get(name)
        before: Mapping[str, Any] = recorded if isinstance(recorded, Mapping) else {}
        differ = [f"{what} {before.get(key)} -> {now[name].get(key)}"
                  for key, what in (("server", "server"), ("uid", "kube-system uid"))
                  if before.get(key) and now[name].get(key) and before.get(key) != now[name].get(key)]
        if differ:
            # Exit 2 (product.md section 5: "invalid input or usage, nothing applied"): the
            # clusters are fine and preflight has nothing to refuse; what is wrong is running
            # this plan's journal against them, which the user fixes with a flag (--new-run) or
            # another --state-dir, as with a held lock (also 2). Not 3: no cluster check failed.
            raise UsageError(
                f"{journal}: this journal (run {replay.run_id}) was written against other "
                f"clusters ({name}: {', '.join(differ)}); nothing was applied. To migrate with "
                "these clusters, start a new run with 'smrun run --new-run' (the old journal is "
                "kept), or use another --state-dir")
        if not (before.get("uid") and now[name].get("uid")):
            warnings.append(f"{journal}: the {name} cluster's identity is unknown (kube-system "
                            "could not be read); only its server URL was compared")
    return warnings


def completed_line(plan: Plan, replay: Replay, selected: Sequence[VM], *, setup: bool) -> str | None:
    """The line for a plan whose journal says every selected VM (and the setup) completed;
    ``None`` when there is something to run."""
    if replay.run_id is None or replay.finished_at is None or not selected:
        return None
    if any((rec := replay.vms.get(v.ref)) is None or rec.terminal != "Completed" for v in selected):
        return None
    if setup and (rec := replay.vms.get("")) is not None and rec.terminal != "Completed":
        return None
    which = f"all {len(selected)} VMs" if len(selected) > 1 else f"VM {selected[0].ref}"
    return (f"plan {plan.name}: completed at {replay.finished_at} (run {replay.run_id}): {which} "
            f"migrated; nothing to do. To migrate again, start a new run: "
            f"smrun run --new-run {plan.path}")


def start_new_run(journal: Path, replay: Replay) -> Path | None:
    """Move the plan's journal aside as history (``journal-<run id>.jsonl`` beside it) so the
    next run starts fresh; returns where it went (``None``: there was no journal)."""
    if not journal.exists() or journal.stat().st_size == 0:
        return None
    stem = replay.run_id or time.strftime("%Y%m%d%H%M%S", time.gmtime())
    kept = journal.with_name(f"journal-{stem}.jsonl")
    n = 1
    while kept.exists():
        n += 1
        kept = journal.with_name(f"journal-{stem}-{n}.jsonl")
    try:
        journal.rename(kept)
    except OSError as exc:
        raise state_dir_error(journal, exc, "keep the old journal") from None
    return kept


@dataclass(frozen=True)
class PreflightScope:
    """What preflight checks before a run of a journal (a first one, or one resumed), and the
    run's context it checks in. From :func:`preflight_scope`."""

    vms: list[VM]
    """The VMs that start (again): no start in the journal, or it ended Failed or Canceled."""
    setup: bool
    """The setup flow runs (again): it has not completed."""
    reads: ClusterReads
    """What preflight reads and computes for each VM; the engine reuses it for the VMs that start
    soon after (``Engine(prefetched=...)``)."""
    run_id: str
    """The journal's run id, else a new one: what ``Engine.run`` would choose (pass it to it)."""

    @property
    def needed(self) -> bool:
        """Anything to check: a VM or the setup still to start."""
        return bool(self.vms) or self.setup

    def check(self, plan: Plan, itinerary: Itinerary, *,
              servers: Mapping[str, str] | None = None) -> Findings:
        """Preflight's findings for this scope, in the run's context."""
        from statemachine.engine.preflight import run_checks
        return run_checks(plan, itinerary, self.reads.clusters, vms=self.vms, setup=self.setup,
                          servers=servers, reads=self.reads, run_id=self.run_id)


def preflight_scope(replay: Replay, vms: Sequence[VM],
                    clusters: Mapping[str, Cluster]) -> PreflightScope:
    """What preflight checks of ``vms`` (those the run selects) before ``replay``'s journal runs
    against ``clusters``: a VM or the setup that completed, or is under way, is not checked again."""
    # Imported here: `smrun run` imports this module before it has started connecting, and the
    # engine's modules only once it needs them (statemachine.commands, issue 17).
    from statemachine.engine.preflight import ClusterReads
    fresh = [v for v in vms if (rec := replay.vms.get(v.ref)) is None
             or rec.predicates is None or rec.terminal in ("Failed", "Canceled")]
    setup = replay.vms.get("")
    return PreflightScope(fresh, setup is None or setup.terminal != "Completed",
                          ClusterReads(clusters), replay.run_id or new_run_id())
