"""What kube-apiserver's Service registry does to a Service before validation (v1.32).

``pkg/registry/core/service/storage``'s ``beginCreate``/``beginUpdate`` run before the
strategy's ``PrepareFor*`` and validation, on the decoded (defaulted) object:

- :func:`prepare_create` (``beginCreate``): ``normalizeClusterIPs`` (a ``clusterIP`` alone
  becomes ``clusterIPs``), then ``allocateCreate``: ``initIPFamilyFields`` (the family policy's
  default, ``ValidateServiceClusterIPsRelatedFields`` as a pre-check, families inferred from the
  IPs, families and policies the cluster cannot serve refused), the cluster IP (the lowest free
  one from 10.96.0.10 of 10.96.0.0/12, not a random one; one that is named must be in the range
  and free: ``spec.clusterIPs: Invalid value: []string{"10.96.0.20"}: failed to allocate IP
  10.96.0.20: provided IP is already allocated``), node ports for NodePort/LoadBalancer ports
  (the lowest free from 30000 of 30000-32767; one that is named must be in the range and free,
  ``spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated``; ports with
  the same number share one), the health check node port of a LoadBalancer with
  ``externalTrafficPolicy: Local``.
- :func:`prepare_update` (``beginUpdate``, then ``PrepareForUpdate``): ``patchAllocatedValues``
  (a write that leaves out the cluster IPs, node ports by port name, or the health check node
  port keeps them), ``normalizeClusterIPs``, ``initIPFamilyFields`` (the old policy kept),
  allocation for a service leaving ExternalName and for new node ports, then
  ``dropTypeDependentFields``: a service changing to a type that does not use its cluster IPs,
  IP families and policy, node ports, health check node port, ``allocateLoadBalancerNodePorts``,
  load balancer class or external traffic policy loses them, when the write left them as they
  were (so ``type: ExternalName`` alone is a valid update).

Refusals are 422 ``Invalid`` (``validation.invalid``) with upstream's causes; the registry answers
them before the strategy's validation runs, so they come alone. ``check=False`` (the simulator's
own writers) allocates without refusing. The simulated cluster is single-stack IPv4: IPv6
families and ``RequireDualStack`` are refused as a single-stack cluster refuses them, a headless
service without a selector gets both families listed, as upstream gives it.

What it does not do: dual-stack clusters, the MultiCIDRServiceAllocator, random allocation,
releasing (a deleted service's IPs and ports are free because nothing holds them).
"""
from __future__ import annotations

import ipaddress
from typing import Any

from statemachine.sim import servicevalidation as sv
from statemachine.sim.validation import Cause, invalid, invalid_value

Obj = dict[str, Any]

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")  # kubeadm's default
FIRST_AUTOMATIC = 10  # decision: automatic IPs start at 10.96.0.10 (readable, not random)
NODE_PORTS = range(30000, 32768)
_NODE_PORT_RANGE = f"{NODE_PORTS.start}-{NODE_PORTS.stop - 1}"
ALREADY_ALLOCATED_IP = "provided IP is already allocated"
ALREADY_ALLOCATED_PORT = "provided port is already allocated"


def _spec(obj: Obj) -> Obj | None:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else None


def _refuse(obj: Obj, causes: list[Cause], check: bool) -> None:
    if causes and check:
        name = str((obj.get("metadata") or {}).get("name") or "")
        raise invalid("Service", "", name, causes)


def _ips(spec: Obj) -> list[str]:
    return [str(ip) for ip in sv._list(spec.get("clusterIPs"))]

# --------------------------------------------------------------------------- cluster IPs


def _normalize_cluster_ips(spec: Obj, before: Obj | None) -> None:
    """``normalizeClusterIPs``: keep ``clusterIP`` and ``clusterIPs`` in step."""
    ip, ips = spec.get("clusterIP") or "", _ips(spec)
    if before is None:
        if ip and not ips:
            spec["clusterIPs"] = [ip]
        return
    old_ip, old_ips = before.get("clusterIP") or "", _ips(before)
    if old_ips and not ips and old_ip == ip:
        spec["clusterIPs"] = ips = list(old_ips)
    if old_ip != ip:
        if old_ip and not ip:
            if ips == old_ips:
                spec.pop("clusterIPs", None)
        elif ips == old_ips:
            spec["clusterIPs"] = [ip]


def _init_ip_families(spec: Obj, before: Obj | None) -> list[Cause]:
    """``initIPFamilyFields`` on a single-stack IPv4 cluster: what it refuses (its pre-check
    first, alone), after filling in ``ipFamilyPolicy`` and ``ipFamilies``."""
    if spec.get("type") == "ExternalName":
        return []
    if spec.get("ipFamilyPolicy") is None:
        if before is not None and before.get("ipFamilyPolicy") is not None:
            spec["ipFamilyPolicy"] = before["ipFamilyPolicy"]
        elif spec.get("clusterIP") == "None" and not spec.get("selector"):
            spec["ipFamilyPolicy"] = "RequireDualStack"
        else:
            spec["ipFamilyPolicy"] = "SingleStack"
    pre = sv.cluster_ip_causes(spec)
    if pre:
        return pre
    policy = spec["ipFamilyPolicy"]
    ips = _ips(spec)
    families = [str(f) for f in sv._list(spec.get("ipFamilies"))]
    causes: list[Cause] = []
    if before is not None:
        if policy == "SingleStack":
            # Clear intent to drop the secondary IP and family (only a dual-stack service has
            # one; the old object's values are immutable, so they are safe to keep).
            if ips == _ips(before) and len(ips) > 1:
                ips = spec["clusterIPs"] = ips[:1]
            old_families = [str(f) for f in sv._list(before.get("ipFamilies"))]
            if families == old_families and len(families) > 1:
                families = families[:1]
        else:
            if ips and len(ips) < len(_ips(before)):
                causes.append(invalid_value("spec.ipFamilyPolicy", policy, "must be "
                                            "'SingleStack' to release the secondary cluster IP"))
            old_families = sv._list(before.get("ipFamilies"))
            if families and len(families) < len(old_families):
                causes.append(invalid_value("spec.ipFamilyPolicy", policy, "must be "
                                            "'SingleStack' to release the secondary IP family"))
    if policy == "SingleStack":
        many = "must be 'RequireDualStack' or 'PreferDualStack' when multiple"
        if len(ips) == 2:
            causes.append(invalid_value("spec.ipFamilyPolicy", policy, f"{many} cluster IPs are "
                                                                        "specified"))
        if len(families) == 2:
            causes.append(invalid_value("spec.ipFamilyPolicy", policy, f"{many} IP families "
                                                                        "are specified"))
    for i, ip in enumerate(ips):
        if ip == "None":
            break
        family = sv.family_of(ip)
        if i >= len(families):
            if family != "IPv4":
                causes.append(invalid_value(f"spec.clusterIPs[{i}]", ips,
                                            f"{family} is not configured on this cluster"))
            else:
                families.append(family)
    if causes:
        return causes
    if spec.get("clusterIP") == "None" and not spec.get("selector"):
        # Headless without a selector: every family is allowed, and asked for unless
        # SingleStack, even on a single-stack cluster.
        families = families or ["IPv4"]
        if len(families) < 2 and policy != "SingleStack":
            families.append("IPv6" if families[0] == "IPv4" else "IPv4")
        spec["ipFamilies"] = families
        return []
    if policy == "RequireDualStack":
        causes.append(invalid_value("spec.ipFamilyPolicy", policy,
                                    "this cluster is not configured for dual-stack services"))
    causes += [invalid_value(f"spec.ipFamilies[{i}]", family, "not configured on this cluster")
               for i, family in enumerate(families) if family != "IPv4"]
    if causes:
        return causes
    spec["ipFamilies"] = families or ["IPv4"]
    return []


def _ip_problem(ip: str, used: set[str]) -> str | None:
    """The bitmap allocator's refusal of a named IP: outside the range (its network and
    broadcast addresses included) or taken."""
    parsed = sv.parse_ip(ip)
    if parsed is None or parsed not in SERVICE_CIDR or parsed in (
            SERVICE_CIDR.network_address, SERVICE_CIDR.broadcast_address):
        return (f"the provided IP ({parsed or ip}) is not in the valid range. The range of valid "
                f"IPs is {SERVICE_CIDR}")
    if str(parsed) in used:
        return ALREADY_ALLOCATED_IP
    return None


def _used_ips(services: list[Obj], me: tuple[str, str] | None) -> set[str]:
    """The IPs other services hold (``me``: the service being updated, whose own do not
    count)."""
    used: set[str] = set()
    for svc in services:
        if _identity(svc) == me:
            continue
        for ip in _ips((svc.get("spec") or {}) if isinstance(svc.get("spec"), dict) else {}):
            parsed = sv.parse_ip(ip)
            if parsed is not None:
                used.add(str(parsed))
    return used


def _identity(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _alloc_cluster_ips(spec: Obj, used: set[str]) -> list[Cause]:
    """``allocClusterIPs``: nothing for ExternalName or headless services; the IPv4 family's IP,
    the named one checked, else the lowest free."""
    if spec.get("type") == "ExternalName" or _ips(spec)[:1] == ["None"]:
        return []
    ips = _ips(spec) or [""]
    if ips[0]:
        problem = _ip_problem(ips[0], used)
        if problem:
            return [invalid_value("spec.clusterIPs", ips,
                                  f"failed to allocate IP {ips[0]}: {problem}")]
        # Kept as it was written (a sloppy form such as 010.96.0.20 too), as upstream keeps it.
    else:
        base = int(SERVICE_CIDR.network_address)
        for offset in range(FIRST_AUTOMATIC, SERVICE_CIDR.num_addresses - 1):
            candidate = str(ipaddress.IPv4Address(base + offset))
            if candidate not in used:
                ips[0] = candidate
                break
    spec["clusterIPs"] = ips
    spec["clusterIP"] = ips[0]
    return []

# --------------------------------------------------------------------------- node ports


def _used_node_ports(services: list[Obj], me: tuple[str, str] | None) -> set[int]:
    used: set[int] = set()
    for svc in services:
        spec = svc.get("spec")
        if _identity(svc) == me or not isinstance(spec, dict):
            continue
        used |= {sv._int(p.get("nodePort")) for p in sv._list(spec.get("ports"))
                 if isinstance(p, dict)}
        used.add(sv._int(spec.get("healthCheckNodePort")))
    used.discard(0)
    return used


def _port_problem(port: int, used: set[int]) -> str | None:
    if port not in NODE_PORTS:
        return ("provided port is not in the valid range. The range of valid ports is "
                f"{_NODE_PORT_RANGE}")
    return ALREADY_ALLOCATED_PORT if port in used else None


def _next_port(used: set[int]) -> int:
    port = next(p for p in NODE_PORTS if p not in used)
    used.add(port)
    return port


def _allocates_node_ports(spec: Obj) -> bool:
    """``shouldAllocateNodePorts``."""
    return spec.get("type") == "NodePort" or (
        spec.get("type") == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is not False)


def _ports(spec: Obj) -> list[Obj]:
    return [p for p in sv._list(spec.get("ports")) if isinstance(p, dict)]


def _init_node_ports(spec: Obj, used: set[int]) -> list[Cause]:
    """``initNodePorts`` (create): a named node port is taken as it is, ports with the same
    number share one."""
    by_number: dict[int, int] = {}
    ports = _ports(spec)
    for i, port in enumerate(ports):
        wanted = sv._int(port.get("nodePort"))
        if not wanted and not _allocates_node_ports(spec):
            continue
        number = sv._int(port.get("port"))
        shared = by_number.get(number, 0)
        if not shared:
            requested = next((sv._int(p.get("nodePort")) for p in ports
                              if sv._int(p.get("port")) == number and p.get("nodePort")), 0)
            if requested:
                problem = _port_problem(requested, used)
                if problem:
                    return [invalid_value(f"spec.ports[{i}].nodePort", requested, problem)]
                used.add(requested)
            else:
                requested = _next_port(used)
            port["nodePort"] = by_number[number] = requested
        elif wanted != shared:
            if not wanted:
                port["nodePort"] = shared
            else:
                problem = _port_problem(wanted, used)
                if problem:
                    return [invalid_value(f"spec.ports[{i}].nodePort", wanted, problem)]
                used.add(wanted)
    return []


def _update_node_ports(spec: Obj, before: Obj, used: set[int]) -> list[Cause]:
    """``updateNodePorts``: new named node ports must be free, missing ones are allocated."""
    had = {sv._int(p.get("nodePort")) for p in _ports(before)}
    taken: set[int] = set()
    for i, port in enumerate(_ports(spec)):
        wanted = sv._int(port.get("nodePort"))
        if not wanted and not _allocates_node_ports(spec):
            continue
        if wanted:
            if wanted not in had and wanted not in taken:
                problem = _port_problem(wanted, used)
                if problem:
                    return [invalid_value(f"spec.ports[{i}].nodePort", wanted, problem)]
                used.add(wanted)
                taken.add(wanted)
        else:
            port["nodePort"] = _next_port(used)
    return []


def _health_check_port(spec: Obj, used: set[int]) -> None:
    """``allocHealthCheckNodePort`` when none was named."""
    if sv.needs_health_check(spec) and not sv._int(spec.get("healthCheckNodePort")):
        spec["healthCheckNodePort"] = _next_port(used)

# --------------------------------------------------------------------------- create, update


def prepare_create(obj: Obj, services: list[Obj], *, check: bool = False) -> None:
    """``beginCreate`` on the decoded ``obj`` (see the module doc); ``services``: the stored
    ones. Raises 422 ``Invalid`` when ``check``."""
    spec = _spec(obj)
    if spec is None:
        return
    _normalize_cluster_ips(spec, None)
    _refuse(obj, _init_ip_families(spec, None), check)
    # A create counts every stored service, one of the same name too (storage refuses that
    # name only after the registry has allocated).
    _refuse(obj, _alloc_cluster_ips(spec, _used_ips(services, None)), check)
    used = _used_node_ports(services, None)
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        _refuse(obj, _init_node_ports(spec, used), check)
    _health_check_port(spec, used)


def _needs_cluster_ip(spec: Obj) -> bool:
    return spec.get("type") != "ExternalName"


def _needs_node_port(spec: Obj) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _patch_allocated_values(spec: Obj, before: Obj) -> None:
    """``patchAllocatedValues``."""
    if _needs_cluster_ip(before) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and before.get("clusterIP"):
            spec["clusterIP"] = before["clusterIP"]
        if not _ips(spec) and _ips(before):
            spec["clusterIPs"] = list(_ips(before))
    if _needs_node_port(before) and _needs_node_port(spec):
        def node_ports(s: Obj) -> set[int]:
            return {sv._int(p.get("nodePort")) for p in _ports(s)} - {0}
        kept = node_ports(before) & node_ports(spec)
        # Node ports are matched by port name: other properties of the port may have changed.
        by_name = {str(p.get("name") or ""): sv._int(p.get("nodePort")) for p in _ports(before)}
        for port in _ports(spec):
            if not sv._int(port.get("nodePort")):
                old = by_name.get(str(port.get("name") or ""), 0)
                if old and old not in kept:
                    port["nodePort"] = old
    if sv.needs_health_check(before) and sv.needs_health_check(spec) and \
            not sv._int(spec.get("healthCheckNodePort")) and before.get("healthCheckNodePort"):
        spec["healthCheckNodePort"] = before["healthCheckNodePort"]


def _drop_type_dependent_fields(new: Obj, spec: Obj, before: Obj) -> None:
    """``dropTypeDependentFields``: what the new type does not use, when the write left it as
    it was (a changed value is left for validation to refuse)."""
    if _needs_cluster_ip(before) and not _needs_cluster_ip(spec):
        if spec.get("clusterIP") == before.get("clusterIP") and _ips(spec) == _ips(before):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if sv._list(spec.get("ipFamilies")) == sv._list(before.get("ipFamilies")):
            spec.pop("ipFamilies", None)
        if spec.get("ipFamilyPolicy") == before.get("ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    if _needs_node_port(before) and not _needs_node_port(spec):
        def node_ports(s: Obj) -> set[int]:
            return {sv._int(p.get("nodePort")) for p in _ports(s)} - {0}
        if node_ports(spec) <= node_ports(before):
            for port in _ports(spec):
                port.pop("nodePort", None)
    if sv.needs_health_check(before) and not sv.needs_health_check(spec) and \
            sv._int(spec.get("healthCheckNodePort")) == sv._int(before.get("healthCheckNodePort")):
        spec.pop("healthCheckNodePort", None)
    if before.get("type") == "LoadBalancer" and spec.get("type") != "LoadBalancer":
        alloc = spec.get("allocateLoadBalancerNodePorts")
        if alloc is not None and alloc == before.get("allocateLoadBalancerNodePorts"):
            spec.pop("allocateLoadBalancerNodePorts", None)
        if spec.get("loadBalancerClass") == before.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if _needs_node_port(before) and not _needs_node_port(spec) and \
            spec.get("externalTrafficPolicy") == before.get("externalTrafficPolicy"):
        spec.pop("externalTrafficPolicy", None)
    status = new.get("status")
    if spec.get("type") != "LoadBalancer" and isinstance(status, dict) and \
            status.get("loadBalancer"):
        status["loadBalancer"] = {}


def prepare_update(new: Obj, old: Obj, services: list[Obj], *, check: bool = False) -> None:
    """``beginUpdate`` and ``PrepareForUpdate`` on the decoded ``new`` (see the module doc).
    Raises 422 ``Invalid`` when ``check``."""
    spec, before = _spec(new), _spec(old)
    if spec is None or before is None:
        return
    _patch_allocated_values(spec, before)
    _normalize_cluster_ips(spec, before)
    _refuse(new, _init_ip_families(spec, before), check)
    if before.get("type") == "ExternalName" and spec.get("type") != "ExternalName":
        _refuse(new, _alloc_cluster_ips(spec, _used_ips(services, _identity(new))), check)
    used = _used_node_ports(services, _identity(new))
    if _needs_node_port(spec):
        _refuse(new, _update_node_ports(spec, before, used), check)
    if not sv.needs_health_check(before):
        _health_check_port(spec, used)
    _drop_type_dependent_fields(new, spec, before)
