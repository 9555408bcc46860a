"""kube-apiserver's validation of core/v1 Services (v1.32): the spec rules, the cluster IP fields.

What ``ValidateService`` (``pkg/apis/core/validation``) checks on every create and update, on the
object as the registry hands it over: decoded with ``SetDefaults_Service`` and given its cluster
IPs, IP families and node ports (``serviceregistry.prepare_create``), so a port's protocol and
target port, the session affinity, the type and the traffic policies are always present by then:

- ``spec.ports`` required unless headless (``clusterIPs == ["None"]``) or ExternalName; per port
  (``validateServicePort``): a name when there are several (``Required value``), a DNS-1123
  label, unique (``Duplicate value``); ``port`` in 1..65535; ``protocol`` one of SCTP/TCP/UDP
  (``Unsupported value``); ``targetPort`` a port number or an IANA service name
  (``IsValidPortName``); ``appProtocol`` a qualified name; duplicate protocol+port pairs
  (``Duplicate value: core.ServicePort{...}``) and node ports; no ``nodePort`` on a ClusterIP
  service;
- the type-specific rules: LoadBalancer may not expose the kubelet port 10250, NodePort and
  LoadBalancer may not be headless, ExternalName needs ``externalName`` (a DNS-1123 subdomain, a
  trailing dot allowed) and may not carry cluster IPs, IP families or a family policy;
- ``spec.selector`` keys and values as labels, ``sessionAffinity`` (None or ClientIP, and then
  a timeout in 1..86400), ``type`` (ClusterIP, ExternalName, LoadBalancer, NodePort),
  ``externalIPs`` (valid, not unspecified, loopback or link-local), load balancer source ranges,
  class and ``allocateLoadBalancerNodePorts`` only on LoadBalancer services, the external and
  internal traffic policies, the health check node port, ``trafficDistribution``;
- :func:`cluster_ip_causes` (``ValidateServiceClusterIPsRelatedFields``): ``clusterIP`` and
  ``clusterIPs[0]`` agree, each IP valid (``"None"`` only alone), at most two, one per family,
  IP families and policy supported. The registry also runs it before it allocates;
- updates (``ValidateServiceUpdate``, :func:`update_causes`): a cluster IP may not change once
  set (``spec.clusterIPs[0]: Invalid value: []string{...}: may not change once set``) unless the
  service is or becomes ExternalName or stays headless; the load balancer class and a needed
  health check node port are immutable.

Values in messages are printed as Go's ``field.Error`` prints them (``validation.go_value``).
What it does not do: ``ValidateConditionalService`` (feature gates), dual-stack clusters (the
simulated cluster is IPv4 only: see ``serviceregistry.py``), the topology annotations
beyond their agreement.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from statemachine.sim.validation import (Cause, dns1123_label, dns1123_subdomain, duplicate,
                                         forbidden, go_quote, invalid_value, label_value,
                                         not_supported, qualified_name, required)

Obj = dict[str, Any]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_PROTOCOLS = ["SCTP", "TCP", "UDP"]
_TYPES = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
_AFFINITIES = ["ClientIP", "None"]
_FAMILIES = ["IPv4", "IPv6"]
_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
_TRAFFIC_POLICIES = ["Cluster", "Local"]
KUBELET_PORT = 10250
MAX_AFFINITY_SECONDS = 86400
PORT_RANGE = "must be between 1 and 65535, inclusive"
INVALID_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
INVALID_CIDR = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
_TOPOLOGY_HINTS = "service.kubernetes.io/topology-aware-hints"
_ONLY_LB = "may only be used when `type` is 'LoadBalancer'"

# --------------------------------------------------------------------------- addresses

_V4_PART = re.compile(r"[0-9]+")


def parse_ip(value: str) -> IP | None:
    """``netutils.ParseIPSloppy``: Go's pre-1.17 ``net.ParseIP``, which allows leading zeros in
    IPv4 octets (``010.1.2.3`` is 10.1.2.3); no zone, no surrounding space."""
    if not isinstance(value, str) or not value or "%" in value or value != value.strip():
        return None
    if ":" not in value:
        parts = value.split(".")
        if len(parts) != 4 or not all(_V4_PART.fullmatch(p) and int(p) <= 255 for p in parts):
            return None
        return ipaddress.IPv4Address(".".join(str(int(p)) for p in parts))
    try:
        v6 = ipaddress.IPv6Address(value)
    except ValueError:
        return None
    # Go's net.IP prints an IPv4-mapped address as IPv4 and treats it as one.
    return v6.ipv4_mapped or v6


def family_of(value: str) -> str:
    ip = parse_ip(value)
    if ip is None:
        return "unknown"
    return "IPv4" if ip.version == 4 else "IPv6"


def _valid_cidr(value: str) -> bool:
    """``netutils.ParseCIDRSloppy`` accepts ``ip/prefix`` with a sloppy IP."""
    ip, _, prefix = value.partition("/")
    parsed = parse_ip(ip)
    if parsed is None or not prefix.isdigit():
        return False
    return int(prefix) <= (32 if parsed.version == 4 and ":" not in ip else 128)


def _non_special_ip(fld: str, value: str) -> list[Cause]:
    """``ValidateNonSpecialIP`` (external IPs)."""
    ip = parse_ip(value)
    if ip is None:
        return [invalid_value(fld, value, "must be a valid IP address")]
    causes: list[Cause] = []
    if ip.is_unspecified:
        causes.append(invalid_value(fld, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        causes.append(invalid_value(fld, value,
                                    "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        causes.append(invalid_value(fld, value, "may not be in the link-local range "
                                                "(169.254.0.0/16, fe80::/10)"))
    link_local_multicast = (ip in ipaddress.ip_network("224.0.0.0/24") if ip.version == 4
                            else ip in ipaddress.ip_network("ff02::/16"))
    if link_local_multicast:
        causes.append(invalid_value(fld, value, "may not be in the link-local multicast range "
                                                "(224.0.0.0/24, ff02::/10)"))
    return causes

# --------------------------------------------------------------------------- ports


_PORT_NAME_CHARS = re.compile("[-a-z0-9]+")


def port_name_problems(value: str) -> list[str]:
    """``validation.IsValidPortName`` (an IANA_SVC_NAME)."""
    errs: list[str] = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _port_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _int(value: Any) -> int:
    """An int32 field as Go decoded it (absent: 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _go_service_port(protocol: str, port: int) -> str:
    """``%#v`` of the ``core.ServicePort`` key the duplicate check builds (only protocol and
    port set)."""
    return (f'core.ServicePort{{Name:"", Protocol:{go_quote(protocol)}, AppProtocol:(*string)'
            f'(nil), Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, '
            "NodePort:0}")


def _port_causes(port: Obj, path: str, require_name: bool, names: set[str]) -> list[Cause]:
    """``validateServicePort``."""
    causes: list[Cause] = []
    name = port.get("name") or ""
    if require_name and not name:
        causes.append(required(f"{path}.name"))
    elif name:
        causes += [invalid_value(f"{path}.name", name, m) for m in dns1123_label(name)]
        if name in names:
            causes.append(duplicate(f"{path}.name", name))
        names.add(name)
    number = _int(port.get("port"))
    if not _port_number(number):
        causes.append(invalid_value(f"{path}.port", number, PORT_RANGE))
    protocol = port.get("protocol") or ""
    if not protocol:
        causes.append(required(f"{path}.protocol"))
    elif protocol not in _PROTOCOLS:
        causes.append(not_supported(f"{path}.protocol", protocol, _PROTOCOLS))
    target = port.get("targetPort")
    if isinstance(target, str):
        causes += [invalid_value(f"{path}.targetPort", target, m)
                   for m in port_name_problems(target)]
    elif not _port_number(_int(target)):
        causes.append(invalid_value(f"{path}.targetPort", _int(target), PORT_RANGE))
    app = port.get("appProtocol")
    if isinstance(app, str):
        causes += [invalid_value(f"{path}.appProtocol", app, m) for m in qualified_name(app)]
    return causes

# --------------------------------------------------------------------------- the spec


def _spec(obj: Obj) -> Obj:
    raw = obj.get("spec")
    return raw if isinstance(raw, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def is_headless(spec: Obj) -> bool:
    """upstream's ``isHeadlessService``: exactly ``clusterIPs: ["None"]``."""
    return _list(spec.get("clusterIPs")) == ["None"]


def externally_accessible(spec: Obj) -> bool:
    """``apiservice.ExternallyAccessible``."""
    stype = spec.get("type")
    return stype in ("LoadBalancer", "NodePort") or (
        stype == "ClusterIP" and bool(_list(spec.get("externalIPs"))))


def needs_health_check(spec: Obj) -> bool:
    """``apiservice.NeedsHealthCheck``: a LoadBalancer with ``externalTrafficPolicy: Local``."""
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def cluster_ip_causes(spec: Obj) -> list[Cause]:
    """``ValidateServiceClusterIPsRelatedFields`` (nothing for ExternalName, whose fields
    :func:`service_causes` checks)."""
    if spec.get("type") == "ExternalName":
        return []
    causes: list[Cause] = []
    cluster_ip = spec.get("clusterIP") or ""
    ips = [str(ip) for ip in _list(spec.get("clusterIPs"))]
    if cluster_ip:
        if not ips:
            causes.append(required("spec.clusterIPs"))
        elif ips[0] != cluster_ip:
            causes.append(invalid_value("spec.clusterIPs", ips,
                                        "first value must match `clusterIP`"))
    elif ips:
        causes.append(invalid_value("spec.clusterIPs", ips,
                                    "must be empty when `clusterIP` is not specified"))
    families = [str(f) for f in _list(spec.get("ipFamilies"))]
    seen: set[str] = set()
    for i, family in enumerate(families):
        if family not in _FAMILIES:
            causes.append(not_supported(f"spec.ipFamilies[{i}]", family, _FAMILIES))
        if family in seen:
            causes.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in _POLICIES:
        causes.append(not_supported("spec.ipFamilyPolicy", policy, _POLICIES))
    bad_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad_ips = True
                causes.append(invalid_value("spec.clusterIPs", ips,
                                            "'None' must be the first and only value"))
            continue
        if parse_ip(ip) is None:
            bad_ips = True
            causes.append(invalid_value(f"spec.clusterIPs[{i}]", ip, INVALID_IP))
    if len(ips) > 2:
        causes.append(invalid_value("spec.clusterIPs", ips, "may only hold up to 2 values"))
    if bad_ips:
        return causes
    if len(ips) > 1 and len({family_of(ip) for ip in ips}) < 2:
        causes.append(invalid_value("spec.clusterIPs", ips,
                                    "may specify no more than one IP for each IP family"))
    if not is_headless(spec):
        for i, (ip, family) in enumerate(zip(ips, families)):
            if (family == "IPv4" and family_of(ip) == "IPv6") or (
                    family == "IPv6" and family_of(ip) != "IPv6"):
                causes.append(invalid_value(f"spec.clusterIPs[{i}]", ip,
                                            f"expected an {family} value as indicated by "
                                            f"`ipFamilies[{i}]`"))
    return causes


def _type_causes(spec: Obj, ports: list[Obj]) -> list[Cause]:
    stype = spec.get("type")
    ips = _list(spec.get("clusterIPs"))
    causes: list[Cause] = []
    if stype in ("LoadBalancer", "NodePort"):
        if stype == "LoadBalancer":
            causes += [invalid_value(f"spec.ports[{i}]", KUBELET_PORT,
                                     f"may not expose port {KUBELET_PORT} externally since it "
                                     "is used by kubelet")
                       for i, port in enumerate(ports) if _int(port.get("port")) == KUBELET_PORT]
        if is_headless(spec):
            causes.append(invalid_value("spec.clusterIPs[0]", ips[0],
                                        f"may not be set to 'None' for {stype} services"))
    elif stype == "ExternalName":
        for fld in ("clusterIPs", "ipFamilies"):
            if _list(spec.get(fld)):
                causes.append(forbidden(f"spec.{fld}", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            causes.append(forbidden("spec.ipFamilyPolicy",
                                    "may not be set for ExternalName services"))
        # The value (a CNAME) may end with a dot, as a fully qualified name does.
        cname = str(spec.get("externalName") or "").removesuffix(".")
        if cname:
            causes += [invalid_value("spec.externalName", cname, m)
                       for m in dns1123_subdomain(cname)]
        else:
            causes.append(required("spec.externalName"))
    return causes


def _affinity_causes(spec: Obj) -> list[Cause]:
    affinity = spec.get("sessionAffinity") or ""
    if not affinity:
        return [required("spec.sessionAffinity")]
    if affinity not in _AFFINITIES:
        return [not_supported("spec.sessionAffinity", affinity, _AFFINITIES)]
    config = spec.get("sessionAffinityConfig")
    if affinity == "None":
        return [forbidden("spec.sessionAffinityConfig",
                          "must not be set when session affinity is None")] if config else []
    # validateClientIPAffinityConfig
    when = "when session affinity type is ClientIP"
    path = "spec.sessionAffinityConfig"
    if not isinstance(config, dict):
        return [required(path, when)]
    client_ip = config.get("clientIP")
    if not isinstance(client_ip, dict):
        return [required(f"{path}.clientIP", when)]
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return [required(f"{path}.clientIP.timeoutSeconds", when)]
    if not 0 < _int(timeout) <= MAX_AFFINITY_SECONDS:
        return [invalid_value(f"{path}.clientIP.timeoutSeconds", timeout,
                              f"must be greater than 0 and less than {MAX_AFFINITY_SECONDS}")]
    return []


def _source_range_causes(obj: Obj, spec: Obj) -> list[Cause]:
    ranges = [str(r) for r in _list(spec.get("loadBalancerSourceRanges"))]
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    causes: list[Cause] = []
    if ranges:
        # Upstream's path for the field is spelled with a capital L.
        path = "spec.LoadBalancerSourceRanges"
        if spec.get("type") != "LoadBalancer":
            causes.append(forbidden(path, _ONLY_LB))
        for i, value in enumerate(ranges):
            value = value.strip()
            if not _valid_cidr(value):
                causes.append(invalid_value(f"{path}[{i}]", value, INVALID_CIDR))
    elif isinstance(notes, dict) and SOURCE_RANGES_ANNOTATION in notes:
        path = f"metadata.annotations[{SOURCE_RANGES_ANNOTATION}]"
        if spec.get("type") != "LoadBalancer":
            causes.append(forbidden(path, _ONLY_LB))
        text = str(notes[SOURCE_RANGES_ANNOTATION] or "").strip()
        for value in text.split(",") if text else []:
            value = value.strip()
            if not _valid_cidr(value):
                causes.append(invalid_value(path, value, INVALID_CIDR))
    return causes


def _traffic_causes(spec: Obj) -> list[Cause]:
    """``validateServiceExternalTrafficPolicy``, ``validateServiceInternalTrafficFieldsValue``,
    ``validateServiceTrafficDistribution``."""
    causes: list[Cause] = []
    etp = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(spec):
        if etp:
            causes.append(invalid_value("spec.externalTrafficPolicy", etp,
                                        "may only be set for externally-accessible services"))
    elif not etp:
        causes.append(required("spec.externalTrafficPolicy"))
    elif etp not in _TRAFFIC_POLICIES:
        causes.append(not_supported("spec.externalTrafficPolicy", etp, _TRAFFIC_POLICIES))
    hc_port = _int(spec.get("healthCheckNodePort"))
    if not needs_health_check(spec):
        if hc_port:
            causes.append(invalid_value("spec.healthCheckNodePort", hc_port,
                                        "may only be set when `type` is 'LoadBalancer' and "
                                        "`externalTrafficPolicy` is 'Local'"))
    elif not hc_port:
        causes.append(required("spec.healthCheckNodePort"))
    elif not _port_number(hc_port):
        causes.append(invalid_value("spec.healthCheckNodePort", hc_port, PORT_RANGE))
    itp = spec.get("internalTrafficPolicy")
    if itp is None:
        # Historically not required of ExternalName services.
        if spec.get("type") in ("ClusterIP", "NodePort", "LoadBalancer"):
            causes.append(required("spec.internalTrafficPolicy"))
    elif itp not in _TRAFFIC_POLICIES:
        causes.append(not_supported("spec.internalTrafficPolicy", itp, _TRAFFIC_POLICIES))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution != "PreferClose":
        causes.append(not_supported("spec.trafficDistribution", distribution, ["PreferClose"]))
    return causes


def service_causes(obj: Obj) -> list[Cause]:
    """``ValidateService`` without the metadata rules (``validation.check_create`` has those),
    in upstream's order."""
    spec = _spec(obj)
    causes: list[Cause] = []
    notes = (obj.get("metadata") or {}).get("annotations") or {}
    if isinstance(notes, dict) and _TOPOLOGY_MODE in notes and _TOPOLOGY_HINTS in notes \
            and notes[_TOPOLOGY_MODE] != notes[_TOPOLOGY_HINTS]:
        causes.append(invalid_value(f"metadata.annotations[{_TOPOLOGY_MODE}]",
                                    notes[_TOPOLOGY_MODE],
                                    f"must match annotations[{_TOPOLOGY_HINTS}] when both are "
                                    "specified"))
    stype = spec.get("type") or ""
    ports = [p if isinstance(p, dict) else {} for p in _list(spec.get("ports"))]
    if not ports and not is_headless(spec) and stype != "ExternalName":
        causes.append(required("spec.ports"))
    causes += _type_causes(spec, ports)
    names: set[str] = set()
    for i, port in enumerate(ports):
        causes += _port_causes(port, f"spec.ports[{i}]", len(ports) > 1, names)
    selector = spec.get("selector")
    if isinstance(selector, dict):
        for key in sorted(selector):
            causes += [invalid_value("spec.selector", key, m) for m in qualified_name(key)]
            value = selector[key]
            if isinstance(value, str):
                causes += [invalid_value("spec.selector", value, m) for m in label_value(value)]
    causes += _affinity_causes(spec)
    causes += cluster_ip_causes(spec)
    for i, ip in enumerate(_list(spec.get("externalIPs"))):
        fld = f"spec.externalIPs[{i}]"
        causes += ([invalid_value(fld, ip, INVALID_IP)] if parse_ip(str(ip)) is None
                   else _non_special_ip(fld, str(ip)))
    if not stype:
        causes.append(required("spec.type"))
    elif stype not in _TYPES:
        causes.append(not_supported("spec.type", stype, _TYPES))
    if stype == "ClusterIP":
        causes += [forbidden(f"spec.ports[{i}].nodePort",
                             "may not be used when `type` is 'ClusterIP'")
                   for i, port in enumerate(ports) if _int(port.get("nodePort"))]
    node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        node_port = _int(port.get("nodePort"))
        if node_port:
            key = (str(port.get("protocol") or ""), node_port)
            if key in node_ports:
                causes.append(duplicate(f"spec.ports[{i}].nodePort", node_port))
            node_ports.add(key)
    pairs: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        pair = (str(port.get("protocol") or ""), _int(port.get("port")))
        if pair in pairs:
            causes.append(duplicate(f"spec.ports[{i}]", None, _go_service_port(*pair)))
        pairs.add(pair)
    causes += _source_range_causes(obj, spec)
    if spec.get("allocateLoadBalancerNodePorts") is not None and stype != "LoadBalancer":
        causes.append(forbidden("spec.allocateLoadBalancerNodePorts", _ONLY_LB))
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        # Upstream's path lacks the "spec." here.
        causes.append(required("allocateLoadBalancerNodePorts"))
    causes += _class_causes(None, spec)
    causes += _traffic_causes(spec)
    return causes


def _class_causes(old: Obj | None, spec: Obj) -> list[Cause]:
    """``validateLoadBalancerClassField``."""
    causes: list[Cause] = []
    lb_class = spec.get("loadBalancerClass")
    if old is not None and old.get("type") == "LoadBalancer" and \
            spec.get("type") == "LoadBalancer" and old.get("loadBalancerClass") != lb_class:
        causes.append(invalid_value("spec.loadBalancerClass", lb_class, "may not change once set"))
    if spec.get("type") == "LoadBalancer":
        if isinstance(lb_class, str):
            causes += [invalid_value("spec.loadBalancerClass", lb_class, m)
                       for m in qualified_name(lb_class)]
    elif lb_class is not None:
        causes.append(forbidden("spec.loadBalancerClass", _ONLY_LB))
    return causes


def update_causes(old: Obj, new: Obj) -> list[Cause]:
    """``ValidateServiceUpdate``'s own rules (``ValidateService`` follows them):
    ``validateUpgradeDowngradeClusterIPs``, ``validateUpgradeDowngradeIPFamilies``, the load
    balancer class, the health check node port."""
    before, spec = _spec(old), _spec(new)
    causes: list[Cause] = []
    if "ExternalName" not in (before.get("type"), spec.get("type")) and not (
            is_headless(before) and is_headless(spec)):
        old_ips = [str(ip) for ip in _list(before.get("clusterIPs"))]
        ips = [str(ip) for ip in _list(spec.get("clusterIPs"))]
        if len(old_ips) == len(ips):
            causes += [invalid_value(f"spec.clusterIPs[{i}]", ips, "may not change once set")
                       for i, ip in enumerate(old_ips) if ip != ips[i]]
        elif len(old_ips) > len(ips):
            if not ips:
                causes.append(invalid_value("spec.clusterIPs[0]", ips,
                                            "primary clusterIP can not be unset"))
            elif ips[0] != old_ips[0]:
                causes.append(invalid_value("spec.clusterIPs[0]", ips, "may not change once set"))
            if len(ips) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
                causes.append(invalid_value("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                                            "must be set to 'SingleStack' when releasing the "
                                            "secondary clusterIP"))
        elif old_ips and ips[0] != old_ips[0]:
            causes.append(invalid_value("spec.clusterIPs[0]", ips, "may not change once set"))
        if is_headless(before) == is_headless(spec):
            old_families = [str(f) for f in _list(before.get("ipFamilies"))]
            families = [str(f) for f in _list(spec.get("ipFamilies"))]
            if len(old_families) == len(families) and old_families != families:
                shown = "[]core.IPFamily{" + ", ".join(go_quote(f) for f in families) + "}"
                causes += [("FieldValueInvalid", "spec.ipFamilies[0]",
                            f"Invalid value: {shown}: may not change once set")
                           for f, g in zip(old_families, families) if f != g]
    # Upstream checks the class here (with its format) and again in ValidateService.
    causes += _class_causes(before, spec)
    if needs_health_check(before) and needs_health_check(spec) and \
            _int(before.get("healthCheckNodePort")) != _int(spec.get("healthCheckNodePort")):
        causes.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
    return causes

def status_causes(obj: Obj) -> list[Cause]:
    """``ValidateLoadBalancerStatus`` on a status write: ingress only on LoadBalancer services
    (the ``AllowServiceLBStatusOnNonLB`` gate is off), each entry's ``ip`` valid and then with an
    ``ipMode`` (``VIP`` by default) of Proxy or VIP, a ``hostname`` a DNS-1123 subdomain and not
    an IP."""
    status = obj.get("status")
    lb = status.get("loadBalancer") if isinstance(status, dict) else None
    ingress = _list(lb.get("ingress")) if isinstance(lb, dict) else []
    path = "status.loadBalancer.ingress"
    if ingress and _spec(obj).get("type") != "LoadBalancer":
        return [forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    causes: list[Cause] = []
    for i, entry in enumerate(e if isinstance(e, dict) else {} for e in ingress):
        ip, mode, host = entry.get("ip") or "", entry.get("ipMode"), entry.get("hostname") or ""
        if ip and parse_ip(str(ip)) is None:
            causes.append(invalid_value(f"{path}[{i}].ip", ip, INVALID_IP))
        if mode is None:
            if ip:
                causes.append(required(f"{path}[{i}].ipMode", "must be specified when `ip` is set"))
        elif not ip:
            causes.append(forbidden(f"{path}[{i}].ipMode", "may not be specified when `ip` is "
                                                           "not set"))
        elif mode not in ("Proxy", "VIP"):
            causes.append(not_supported(f"{path}[{i}].ipMode", mode, ["Proxy", "VIP"]))
        if host:
            causes += [invalid_value(f"{path}[{i}].hostname", host, m)
                       for m in dns1123_subdomain(str(host))]
            if parse_ip(str(host)) is not None:
                causes.append(invalid_value(f"{path}[{i}].hostname", host,
                                            "must be a DNS name, not an IP address"))
    return causes

# --------------------------------------------------------------------------- Go's JSON types

# A Service's spec as Go's JSON decoder types it: a Go type name (as reflect prints it) and its
# shape: "string", "int32", "bool", "intstr" (IntOrString), ("struct", {json name: type}),
# ("list", element type), ("map", value type).
GoType = tuple[str, Any]
_STR: GoType = ("string", "string")
_STRS: GoType = ("[]string", ("list", _STR))
_I32: GoType = ("int32", "int32")
_BOOL: GoType = ("bool", "bool")
_PORT: GoType = ("v1.ServicePort", ("struct", {
    "name": _STR, "protocol": ("v1.Protocol", "string"), "appProtocol": _STR, "port": _I32,
    "targetPort": ("intstr.IntOrString", "intstr"), "nodePort": _I32}))
_SPEC: GoType = ("v1.ServiceSpec", ("struct", {
    "ports": ("[]v1.ServicePort", ("list", _PORT)),
    "selector": ("map[string]string", ("map", _STR)),
    "clusterIP": _STR, "clusterIPs": _STRS, "type": ("v1.ServiceType", "string"),
    "externalIPs": _STRS, "sessionAffinity": ("v1.ServiceAffinity", "string"),
    "loadBalancerIP": _STR, "loadBalancerSourceRanges": _STRS, "externalName": _STR,
    "externalTrafficPolicy": ("v1.ServiceExternalTrafficPolicy", "string"),
    "healthCheckNodePort": _I32, "publishNotReadyAddresses": _BOOL,
    "sessionAffinityConfig": ("v1.SessionAffinityConfig", ("struct", {
        "clientIP": ("v1.ClientIPConfig", ("struct", {"timeoutSeconds": _I32}))})),
    "ipFamilies": ("[]v1.IPFamily", ("list", ("v1.IPFamily", "string"))),
    "ipFamilyPolicy": ("v1.IPFamilyPolicy", "string"),
    "allocateLoadBalancerNodePorts": _BOOL, "loadBalancerClass": _STR,
    "internalTrafficPolicy": ("v1.ServiceInternalTrafficPolicy", "string"),
    "trafficDistribution": _STR}))


def _json_kind(value: Any) -> str:
    """How Go's ``UnmarshalTypeError`` names a JSON value of the wrong type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "string"


def _type_problem(value: Any, go: GoType, struct: str, path: str) -> tuple[str, str, str, str] | None:
    """The first ``(found, struct, path, go type)`` Go's decoder reports under ``value``."""
    name, shape = go
    if value is None:
        return None  # null decodes to the zero value
    if shape in ("string", "bool"):
        ok = isinstance(value, str) if shape == "string" else isinstance(value, bool)
        return None if ok else (_json_kind(value), struct, path, name)
    if shape in ("int32", "intstr"):
        if shape == "intstr" and isinstance(value, str):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return (_json_kind(value), struct, path, "int32")
        if isinstance(value, float) or not -2 ** 31 <= value < 2 ** 31:
            return (f"number {value}", struct, path, "int32")
        return None
    if isinstance(shape, tuple) and shape[0] == "struct":
        if not isinstance(value, dict):
            return (_json_kind(value), struct, path, name)
        inner = name.split(".")[-1]
        for key, item in value.items():
            field = shape[1].get(key)
            if field is not None:
                problem = _type_problem(item, field, inner, f"{path}.{key}")
                if problem:
                    return problem
        return None
    if not isinstance(value, list if shape[0] == "list" else dict):
        return (_json_kind(value), struct, path, name)
    for item in (value if isinstance(value, list) else value.values()):
        problem = _type_problem(item, shape[1], struct, path)
        if problem:
            return problem
    return None


def spec_type_problem(body: Obj) -> tuple[str, str, str, str] | None:
    """What Go's JSON decoder refuses first in a Service's ``spec`` (a quoted ``port: "80"``:
    ``("string", "ServicePort", "spec.ports.port", "int32")``), or ``None``."""
    return _type_problem(body.get("spec"), _SPEC, "Service", "spec")
