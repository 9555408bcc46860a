"""The simulated virt-synchronization-controller pair: how the two sides of a decentralized
migration see each other (kubevirt-lifecycle.md §1.5, §1.6 steps 8/9/11/15/18/22, §6).

The source side "dials" the target through the shared :class:`SimNetwork` using
``spec.sendTo.connectURL``; the target side dials back using the source address found in its
VMI's ``migrationState.sourceState.syncAddress``. A dial fails when nobody listens on the
address (``connection refused``), when either side does not trust the other's KubeVirt CA
(``x509``), or when no receiving VMIM with that ``migrationID`` exists (``unable to locate VMI``);
the caller records the message as the ``decentralizedMigrationBlocked`` condition and retries.

:func:`exchange` is one round of both gRPC calls at once: the source VMI's ``sourceState`` (and
start timestamp, mode, source node/pod) is copied into the target VMI, and the target VMI's
``targetState`` (and target node/pod/address, ``completed``/``failed``/``endTimestamp``) into the
source VMI. Each side stamps its own sync address into the copy it sends. Writes are atomic
read-modify-writes on each store, so the two cluster threads may run it concurrently.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statemachine.sim.controller import ClusterContext
from statemachine.sim import addresses
from statemachine.sim.controllers import kubevirt
from statemachine.sim.controllers.conditions import FAIL_MIGRATION_AT, annotations_of
from statemachine.sim.store import Obj

VMIM = "VirtualMachineInstanceMigration"
VMI = "VirtualMachineInstance"
#: Legacy migrationState fields the source sends to the target.
_FROM_SOURCE = ("startTimestamp", "sourceNode", "sourcePod", "mode", "abortRequested")
#: Legacy migrationState fields the target sends to the source (only when set).
_FROM_TARGET = ("targetNode", "targetPod", "targetNodeAddress", "targetDirectMigrationNodePorts",
                "targetNodeDomainDetected", "targetNodeDomainReadyTimestamp", "endTimestamp",
                "completed", "failed", "failureReason")


@dataclass(frozen=True)
class Peer:
    """The other side of a decentralized migration, once it could be reached.

    ``vmim`` and ``vmi`` are the peer store's own snapshots (``Store.peek``): READ-ONLY. Every
    user only reads them or writes through ``mutate_state``/``Store.mutate``, which edit a fresh
    copy.
    """

    ctx: ClusterContext
    vmim: Obj
    vmi: Obj


class Unreachable(Exception):
    """The peer could not be reached; ``str(exc)`` is the message the blocked condition shows."""


def mutate_state(ctx: ClusterContext, vmi: Obj, change: Callable[[dict[str, Any]], None]) -> None:
    """Atomically edit ``status.migrationState`` of ``vmi`` (on ``ctx``'s store) in place."""
    def apply(o: Obj) -> None:
        change(o.setdefault("status", {}).setdefault("migrationState", {}))
    md = vmi["metadata"]
    ctx.store.mutate(VMI, md.get("namespace"), md["name"], apply, copy=False)  # result dropped


def _dial(ctx: ClusterContext, address: str) -> ClusterContext:
    peer = ctx.network.connect(addresses.host_port(address))
    if peer is None:
        # A sync controller listens as soon as its KubeVirt CR reports the address, even if that
        # cluster's operator has not reconciled since start-up (seeded objects are not events).
        for other in ctx.clusters.values():
            kubevirt.announce(other)
        peer = ctx.network.connect(addresses.host_port(address))
    if peer is None:
        raise Unreachable(
            "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error "
            f"while dialing: dial tcp {addresses.host_port(address)}: connect: connection refused\"")
    if not kubevirt.trusts(ctx, peer.name) or not kubevirt.trusts(peer, ctx.name):
        raise Unreachable("rpc error: code = Unavailable desc = connection error: desc = "
                          "\"transport: authentication handshake failed: tls: failed to verify "
                          "certificate: x509: certificate signed by unknown authority\"")
    return peer


def _vmi_of(ctx: ClusterContext, vmim: Obj) -> Obj | None:
    # A peer's objects are only read (see :class:`Peer`): the store's snapshot, uncopied.
    return ctx.store.peek(VMI, vmim["metadata"].get("namespace"),
                          str((vmim.get("spec") or {}).get("vmiName", "")))


def _by_migration_id(ctx: ClusterContext, role: str, mid: Any) -> list[Obj]:
    """VMIMs of ``ctx`` whose ``spec.<role>.migrationID`` is ``mid`` (``role``: sendTo/receive).

    Decision: an index in ``ctx.state`` (migrationID → VMIM keys), checked on use and rebuilt by
    one scan on a miss, so a tick of N concurrent migrations does not scan N VMIMs each.
    """
    index: dict[tuple[str, Any], list[tuple[str, str]]] = ctx.state.setdefault(
        "vmim-by-migration-id", {})
    lock: threading.Lock = ctx.state.setdefault("vmim-by-migration-id-lock", threading.Lock())

    def matching(keys: list[tuple[str, str]]) -> list[Obj]:
        found = []
        for ns, name in keys:
            obj = ctx.store.peek(VMIM, ns, name)  # read-only (see :class:`Peer`)
            spec = (obj or {}).get("spec") or {}
            if obj is not None and (spec.get(role) or {}).get("migrationID") == mid:
                found.append(obj)
        return found

    with lock:  # both cluster threads use the index of a cluster
        hits = matching(index.get((role, mid), []))
        if hits:
            return hits
        index.clear()
        for cand in ctx.store.peek_list(VMIM):  # read-only: keys go into the index
            spec = cand.get("spec") or {}
            for r in ("sendTo", "receive"):
                if spec.get(r):
                    index.setdefault((r, spec[r].get("migrationID")), []).append(
                        (cand["metadata"].get("namespace", ""), cand["metadata"]["name"]))
        return matching(index.get((role, mid), []))


def find_target(ctx: ClusterContext, s_vmim: Obj) -> Peer:
    """Dial the target of source VMIM ``s_vmim``; raises :class:`Unreachable`."""
    send_to = (s_vmim.get("spec") or {}).get("sendTo") or {}
    peer = _dial(ctx, str(send_to.get("connectURL", "")))
    mid = send_to.get("migrationID")
    for cand in _by_migration_id(peer, "receive", mid):
        if not (cand.get("spec") or {}).get("sendTo"):
            vmi = _vmi_of(peer, cand)
            if vmi is not None:
                return Peer(peer, cand, vmi)
    raise Unreachable(f"rpc error: code = Unknown desc = source: unable to locate VMI for "
                      f"migrationID {mid}")


def find_source(ctx: ClusterContext, t_vmim: Obj, t_vmi: Obj) -> Peer:
    """Dial the source of target VMIM ``t_vmim``; raises :class:`Unreachable`."""
    state = ((t_vmi.get("status") or {}).get("migrationState") or {}).get("sourceState") or {}
    address = state.get("syncAddress")
    if not address:
        raise Unreachable("waiting for incoming synchronization, unable to proceed")
    peer = _dial(ctx, str(address))
    mid = ((t_vmim.get("spec") or {}).get("receive") or {}).get("migrationID")
    for cand in _by_migration_id(peer, "sendTo", mid):
        vmi = _vmi_of(peer, cand)
        if vmi is not None:
            return Peer(peer, cand, vmi)
    raise Unreachable(f"rpc error: code = Unknown desc = target: unable to locate VMI for "
                      f"migrationID {mid}")


def exchange(s_ctx: ClusterContext, s_vmim: Obj, s_vmi: Obj, target: Peer) -> None:
    """One round of source→target and target→source status sync (see module docstring).

    The source VM's fault annotation travels with the sync as an annotation on the target VMIM,
    so the target holds at that phase instead of racing ahead while the source fails.
    """
    s_state = (s_vmi.get("status") or {}).get("migrationState") or {}
    t_state = (target.vmi.get("status") or {}).get("migrationState") or {}
    t_uid = target.vmim["metadata"]["uid"]
    if (t_state.get("targetState") or {}).get("migrationUID") != t_uid:
        return  # the target has not initialised its side for this VMIM yet
    own = addresses.sync_address(s_ctx.name)
    peer_address = addresses.sync_address(target.ctx.name)

    def into_target(state: dict[str, Any]) -> None:
        source_state = dict(s_state.get("sourceState") or {})
        source_state["syncAddress"] = own
        state["sourceState"] = source_state
        for field in _FROM_SOURCE:
            if s_state.get(field) is not None and field != "abortRequested":
                state[field] = s_state[field]
        if s_state.get("failed") and not state.get("failed"):
            for field in ("failed", "completed", "endTimestamp", "failureReason"):
                if s_state.get(field) is not None:
                    state[field] = s_state[field]

    def into_source(state: dict[str, Any]) -> None:
        target_state = dict(t_state.get("targetState") or {})
        target_state["syncAddress"] = peer_address
        state["targetState"] = target_state
        for field in _FROM_TARGET:
            if t_state.get(field) and not (field in ("completed", "failed")
                                           and state.get("failed")):
                state[field] = t_state[field]

    mutate_state(target.ctx, target.vmi, into_target)
    mutate_state(s_ctx, s_vmi, into_source)
    vm = s_ctx.store.peek("VirtualMachine", s_vmi["metadata"].get("namespace"),
                          s_vmi["metadata"]["name"])  # read-only: an annotation
    fail_at = annotations_of(vm or {}).get(FAIL_MIGRATION_AT)
    if fail_at and annotations_of(target.vmim).get(FAIL_MIGRATION_AT) != fail_at:
        md = target.vmim["metadata"]
        target.ctx.store.mutate(VMIM, md.get("namespace"), md["name"], lambda o: o["metadata"]
                                .setdefault("annotations", {}).update({FAIL_MIGRATION_AT: fail_at}))


def cancel_peer(ctx: ClusterContext, vmim: Obj) -> None:
    """Ask the other side to delete its VMIM (the sync controller's ``CancelMigration``)."""
    spec = vmim.get("spec") or {}
    try:
        if spec.get("sendTo"):
            peer = find_target(ctx, vmim)
        else:
            vmi = _vmi_of(ctx, vmim)
            if vmi is None:
                return
            peer = find_source(ctx, vmim, vmi)
    except Unreachable:
        return
    md = peer.vmim["metadata"]
    if not md.get("deletionTimestamp"):
        peer.ctx.store.delete(VMIM, md.get("namespace"), md["name"])
