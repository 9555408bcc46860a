"""The simulated virt-operator: KubeVirt CR status, sync-controller address, CA bundle merging.

- KubeVirt CR: keeps ``status.phase: Deployed``, ``Available=True`` and
  ``status.synchronizationAddresses`` = this cluster's address (kubevirt-lifecycle.md §6.1), and
  announces that address on the shared :class:`~statemachine.sim.controller.SimNetwork` so the
  other cluster's migration controller can "dial" it. Removing the addresses from the status is
  not undone (a test can simulate a missing sync controller that way); the network then stops
  listening.
- ``kubevirt-external-ca``: when its ``ca-bundle`` is non-empty, every certificate block not yet in
  ``kubevirt-ca`` is appended there, and ``kubevirt-external-ca`` is reset to ``""`` (§6.2). The
  simulator does not check validity dates (its PEMs are placeholders).

What it does not do: feature-gate enforcement (admission is the API server's) or CA rotation.
"""
from __future__ import annotations

from statemachine.sim.controller import ClusterContext, Controller
from statemachine.sim import addresses
from statemachine.sim.store import Obj


def local_sync_addresses(ctx: ClusterContext) -> list[str]:
    """``status.synchronizationAddresses`` of this cluster's KubeVirt CR (``[]`` if none)."""
    for cr in ctx.store.peek_list("KubeVirt"):  # read-only: only the addresses are copied out
        found = (cr.get("status") or {}).get("synchronizationAddresses") or []
        if found:
            return [str(a) for a in found]
    return []


def announce(ctx: ClusterContext) -> list[str]:
    """Make this cluster's sync addresses reachable on the simulated network; returns them."""
    found = local_sync_addresses(ctx)
    for address in found:
        ctx.network.listen(address, ctx.name)
    return found


def trusted_bundle(ctx: ClusterContext) -> str:
    """The CA bundle this cluster's sync controller trusts: ``kubevirt-ca`` plus any external CA
    not merged yet."""
    out = ""
    for name in (addresses.CA_CONFIGMAP, addresses.EXTERNAL_CA_CONFIGMAP):
        cm = ctx.store.peek("ConfigMap", addresses.KUBEVIRT_NAMESPACE, name)  # read-only
        out += str(((cm or {}).get("data") or {}).get("ca-bundle") or "")
    return out


def trusts(ctx: ClusterContext, peer: str) -> bool:
    """Whether this cluster trusts ``peer``'s KubeVirt CA."""
    return addresses.ca_pem(peer) in addresses.pem_blocks(trusted_bundle(ctx))


class KubeVirtController(Controller):
    """KubeVirt CR status and the CA ConfigMaps (see module docstring)."""

    watches = ("KubeVirt", "ConfigMap")

    def reconcile(self, ctx: ClusterContext, obj: Obj) -> bool | None:
        if obj["kind"] == "KubeVirt":
            self._kubevirt(ctx, obj)
        elif (obj["metadata"].get("namespace") == addresses.KUBEVIRT_NAMESPACE
              and obj["metadata"]["name"] == addresses.EXTERNAL_CA_CONFIGMAP):
            self._merge_external_ca(ctx, obj)
        return None

    def _kubevirt(self, ctx: ClusterContext, cr: Obj) -> None:
        md = cr["metadata"]
        if md.get("deletionTimestamp"):
            return
        status = dict(cr.get("status") or {})
        if not status.get("phase"):
            # A KubeVirt CR created without status (e.g. by kubectl): deploy it.
            status["phase"] = "Deployed"
            status["conditions"] = [{"type": "Available", "status": "True",
                                     "reason": "AllComponentsReady",
                                     "message": "All components are ready."}]
            status["synchronizationAddresses"] = [addresses.sync_address(ctx.name)]
            ctx.store.update_status("KubeVirt", md.get("namespace"), md["name"], status)
        for address in status.get("synchronizationAddresses") or []:
            ctx.network.listen(str(address), ctx.name)
        if not status.get("synchronizationAddresses"):
            ctx.network.unlisten(addresses.sync_address(ctx.name))

    def _merge_external_ca(self, ctx: ClusterContext, external: Obj) -> None:
        incoming = addresses.pem_blocks(str((external.get("data") or {}).get("ca-bundle") or ""))
        if not (external.get("data") or {}).get("ca-bundle"):
            return
        ns = addresses.KUBEVIRT_NAMESPACE

        def merge(cm: Obj) -> None:
            data = cm.setdefault("data", {})
            bundle = str(data.get("ca-bundle") or "")
            have = addresses.pem_blocks(bundle)
            for block in incoming:
                if block not in have:
                    if bundle and not bundle.endswith("\n"):
                        bundle += "\n"
                    bundle += block
                    have.append(block)
            data["ca-bundle"] = bundle

        if ctx.store.try_get("ConfigMap", ns, addresses.CA_CONFIGMAP) is None:
            ctx.store.create("ConfigMap", {"metadata": {"name": addresses.CA_CONFIGMAP,
                                                        "namespace": ns}, "data": {}})
        ctx.store.mutate("ConfigMap", ns, addresses.CA_CONFIGMAP, merge)
        ctx.store.mutate("ConfigMap", ns, addresses.EXTERNAL_CA_CONFIGMAP,
                         lambda cm: cm.setdefault("data", {}).update({"ca-bundle": ""}))
