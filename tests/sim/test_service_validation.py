"""A Service's validation and registry as kube-apiserver v1.32 does them (``ValidateService``,
``ValidateServiceUpdate``, the registry's ``beginCreate``/``beginUpdate``): ports, type,
ExternalName, cluster IPs and their allocation, selector, affinity, traffic policies, and
updates, through the ``kubernetes`` client and kubectl; each refusal with its exact message,
field paths and causes."""
from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from statemachine.sim.cluster import SimulatedClusters
from tests.sim.conftest import Kubectl
from tests.sim.refusals import refused
from tests.sim.test_admission import _raw

PORT_RANGE = "must be between 1 and 65535, inclusive"
INVALID_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def _svc(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": spec}


def _causes(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["reason"], c["field"], c["message"]) for c in body["details"]["causes"]]


def _create(core: client.CoreV1Api, body: dict[str, Any]) -> dict[str, Any]:
    return refused(lambda: core.create_namespaced_service("default", body))


# ------------------------------------------------------------------------------------ ports
def test_port_numbers_protocols_and_target_ports(core: client.CoreV1Api) -> None:
    body = _create(core, _svc("web", ports=[
        {"name": "a", "port": 0}, {"name": "b", "port": 70000, "protocol": "HTTP"},
        {"name": "c", "port": 80, "targetPort": "8080"},
        {"name": "d", "port": 81, "targetPort": 99999}]))
    assert body["code"] == 422 and body["reason"] == "Invalid"
    assert _causes(body) == [
        ("FieldValueInvalid", "spec.ports[0].port", f"Invalid value: 0: {PORT_RANGE}"),
        # an unset targetPort is defaulted to the port, 0 here
        ("FieldValueInvalid", "spec.ports[0].targetPort", f"Invalid value: 0: {PORT_RANGE}"),
        ("FieldValueInvalid", "spec.ports[1].port", f"Invalid value: 70000: {PORT_RANGE}"),
        ("FieldValueNotSupported", "spec.ports[1].protocol",
         'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"'),
        ("FieldValueInvalid", "spec.ports[1].targetPort", f"Invalid value: 70000: {PORT_RANGE}"),
        ("FieldValueInvalid", "spec.ports[2].targetPort",
         'Invalid value: "8080": must contain at least one letter (a-z)'),
        ("FieldValueInvalid", "spec.ports[3].targetPort", f"Invalid value: 99999: {PORT_RANGE}")]
    assert body["message"].startswith(
        f'Service "web" is invalid: [spec.ports[0].port: Invalid value: 0: {PORT_RANGE}, ')
    body = _create(core, _svc("web", ports=[{"port": 80, "targetPort": "-Web--Port-"}]))
    assert [c[2] for c in _causes(body)] == [
        f'Invalid value: "-Web--Port-": {m}' for m in (
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "must not contain consecutive hyphens", "must not begin or end with a hyphen")]


def test_port_names_are_required_unique_labels(core: client.CoreV1Api) -> None:
    body = _create(core, _svc("web", ports=[{"port": 80}, {"name": "Http", "port": 81},
                                            {"name": "x", "port": 82}, {"name": "x", "port": 83}]))
    assert _causes(body) == [
        ("FieldValueRequired", "spec.ports[0].name", "Required value"),
        ("FieldValueInvalid", "spec.ports[1].name",
         "Invalid value: \"Http\": a lowercase RFC 1123 label must consist of lower case "
         "alphanumeric characters or '-', and must start and end with an alphanumeric character "
         "(e.g. 'my-name',  or '123-abc', regex used for validation is "
         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        ("FieldValueDuplicate", "spec.ports[3].name", 'Duplicate value: "x"')]
    # One port needs no name; a named one must still be a label.
    core.create_namespaced_service("default", _svc("one", ports=[{"port": 80}]))


def test_duplicate_port_and_protocol_pairs_and_node_ports(core: client.CoreV1Api) -> None:
    body = _create(core, _svc("dns", ports=[
        {"name": "a", "port": 53}, {"name": "b", "port": 53, "protocol": "UDP"},
        {"name": "c", "port": 53, "protocol": "TCP"}]))
    assert _causes(body) == [(
        "FieldValueDuplicate", "spec.ports[2]",
        'Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
        'Port:53, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}')]
    body = _create(core, _svc("np", type="NodePort", ports=[
        {"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30080}]))
    # The registry allocates before validation: the second request of the same port fails there.
    assert _causes(body) == [("FieldValueInvalid", "spec.ports[1].nodePort",
                              "Invalid value: 30080: provided port is already allocated")]
    # TCP and UDP of one port number may share a node port.
    made = core.create_namespaced_service("default", _svc("dns", type="NodePort", ports=[
        {"name": "t", "port": 53}, {"name": "u", "port": 53, "protocol": "UDP"}]))
    assert made.spec.ports[0].node_port == made.spec.ports[1].node_port


def test_node_ports_only_for_node_port_and_load_balancer(core: client.CoreV1Api) -> None:
    body = _create(core, _svc("web", ports=[{"port": 80, "nodePort": 30080}]))
    assert _causes(body) == [("FieldValueForbidden", "spec.ports[0].nodePort",
                              "Forbidden: may not be used when `type` is 'ClusterIP'")]
    body = _create(core, _svc("np", type="NodePort", ports=[{"port": 80, "nodePort": 80}]))
    assert _causes(body) == [(
        "FieldValueInvalid", "spec.ports[0].nodePort", "Invalid value: 80: provided port is not "
        "in the valid range. The range of valid ports is 30000-32767")]
    made = core.create_namespaced_service("default", _svc("np", type="NodePort", ports=[
        {"port": 80, "nodePort": 31000}]))
    assert made.spec.ports[0].node_port == 31000
    body = _create(core, _svc("np2", type="NodePort", ports=[{"port": 80, "nodePort": 31000}]))
    assert _causes(body) == [("FieldValueInvalid", "spec.ports[0].nodePort",
                              "Invalid value: 31000: provided port is already allocated")]
    body = _create(core, _svc("lb", type="LoadBalancer", ports=[{"port": 10250}]))
    assert _causes(body) == [("FieldValueInvalid", "spec.ports[0]", "Invalid value: 10250: may "
                              "not expose port 10250 externally since it is used by kubelet")]


# ------------------------------------------------------------------- type, names, selector
def test_type_external_name_and_selector(core: client.CoreV1Api) -> None:
    body = _create(core, _svc("web", type="Internal", ports=[{"port": 80}]))
    assert _causes(body) == [("FieldValueNotSupported", "spec.type", 'Unsupported value: '
                              '"Internal": supported values: "ClusterIP", "ExternalName", '
                              '"LoadBalancer", "NodePort"')]
    body = _create(core, _svc("ext", type="ExternalName"))
    assert _causes(body) == [("FieldValueRequired", "spec.externalName", "Required value")]
    body = _create(core, _svc("ext", type="ExternalName", externalName="Bad_Name.example.com",
                              clusterIP="10.96.0.50"))
    assert [c[:2] for c in _causes(body)] == [("FieldValueForbidden", "spec.clusterIPs"),
                                              ("FieldValueInvalid", "spec.externalName")]
    assert _causes(body)[0][2] == "Forbidden: may not be set for ExternalName services"
    assert _causes(body)[1][2].startswith('Invalid value: "Bad_Name.example.com": a lowercase '
                                          "RFC 1123 subdomain must consist of")
    # A trailing dot (a fully qualified name) is allowed.
    core.create_namespaced_service("default", _svc("ext", type="ExternalName",
                                                   externalName="db.example.com."))
    body = _create(core, _svc("web", selector={"app/x/y": "ok", "tier": "-bad"},
                              ports=[{"port": 80}]))
    assert [c[:2] for c in _causes(body)] == [("FieldValueInvalid", "spec.selector")] * 2
    assert _causes(body)[0][2].startswith('Invalid value: "app/x/y": a qualified name must')
    assert _causes(body)[1][2].startswith('Invalid value: "-bad": a valid label must be')


def test_session_affinity_and_traffic_policies(core: client.CoreV1Api) -> None:
    body = _create(core, _svc("web", sessionAffinity="Sticky", ports=[{"port": 80}]))
    assert _causes(body) == [("FieldValueNotSupported", "spec.sessionAffinity", 'Unsupported '
                              'value: "Sticky": supported values: "ClientIP", "None"')]
    body = _create(core, _svc("web", sessionAffinity="ClientIP", ports=[{"port": 80}],
                              sessionAffinityConfig={"clientIP": {"timeoutSeconds": 90000}}))
    assert _causes(body) == [("FieldValueInvalid",
                              "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                              "Invalid value: 90000: must be greater than 0 and less than 86400")]
    body = _create(core, _svc("web", externalTrafficPolicy="Local", internalTrafficPolicy="Near",
                              ports=[{"port": 80}]))
    assert _causes(body) == [
        ("FieldValueInvalid", "spec.externalTrafficPolicy", 'Invalid value: "Local": may only '
         "be set for externally-accessible services"),
        ("FieldValueNotSupported", "spec.internalTrafficPolicy", 'Unsupported value: "Near": '
         'supported values: "Cluster", "Local"')]
    # A LoadBalancer with a Local policy gets a health check node port.
    lb = core.create_namespaced_service("default", _svc("lb", type="LoadBalancer",
                                                        externalTrafficPolicy="Local",
                                                        ports=[{"port": 443}]))
    assert 30000 <= lb.spec.health_check_node_port <= 32767
    assert lb.spec.health_check_node_port != lb.spec.ports[0].node_port


# ------------------------------------------------------------------------------ cluster IPs
def test_cluster_ip_must_be_none_empty_or_an_ip(core: client.CoreV1Api) -> None:
    body = _create(core, _svc("web", clusterIP="10.96.0.300", ports=[{"port": 80}]))
    # The registry's pre-check, alone (it runs before the strategy's validation).
    assert _causes(body) == [("FieldValueInvalid", "spec.clusterIPs[0]",
                              f'Invalid value: "10.96.0.300": {INVALID_IP}')]
    assert body["message"] == ('Service "web" is invalid: spec.clusterIPs[0]: Invalid value: '
                               f'"10.96.0.300": {INVALID_IP}')
    body = _create(core, _svc("web", clusterIP="10.96.0.50", clusterIPs=["10.96.0.51"],
                              ports=[{"port": 80}]))
    assert _causes(body) == [("FieldValueInvalid", "spec.clusterIPs", 'Invalid value: '
                              '[]string{"10.96.0.51"}: first value must match `clusterIP`')]
    body = _create(core, _svc("web", clusterIP="None", type="NodePort", ports=[{"port": 80}]))
    assert _causes(body) == [("FieldValueInvalid", "spec.clusterIPs[0]", 'Invalid value: '
                              "\"None\": may not be set to 'None' for NodePort services")]
    body = _create(core, _svc("web", clusterIP="fd00::10", ports=[{"port": 80}]))
    assert _causes(body) == [("FieldValueInvalid", "spec.clusterIPs[0]", 'Invalid value: '
                              '[]string{"fd00::10"}: IPv6 is not configured on this cluster')]
    body = _create(core, _svc("web", ipFamilyPolicy="RequireDualStack", ports=[{"port": 80}]))
    assert _causes(body) == [("FieldValueInvalid", "spec.ipFamilyPolicy", 'Invalid value: '
                              '"RequireDualStack": this cluster is not configured for dual-stack '
                              "services")]


def test_a_named_cluster_ip_must_be_in_range_and_free(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_service("default", _svc("web", clusterIP="10.96.5.5",
                                                          ports=[{"port": 80}]))
    assert (made.spec.cluster_ip, made.spec.cluster_ips) == ("10.96.5.5", ["10.96.5.5"])
    body = _create(core, _svc("api", clusterIP="10.96.5.5", ports=[{"port": 80}]))
    assert body["code"] == 422
    assert body["message"] == (
        'Service "api" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.5.5"}: '
        "failed to allocate IP 10.96.5.5: provided IP is already allocated")
    assert _causes(body) == [("FieldValueInvalid", "spec.clusterIPs", 'Invalid value: '
                              '[]string{"10.96.5.5"}: failed to allocate IP 10.96.5.5: provided '
                              "IP is already allocated")]
    for outside in ("192.168.1.10", "10.96.0.0", "10.111.255.255"):
        body = _create(core, _svc("api", clusterIP=outside, ports=[{"port": 80}]))
        assert body["details"]["causes"][0]["message"] == (
            f'Invalid value: []string{{"{outside}"}}: failed to allocate IP {outside}: the '
            f"provided IP ({outside}) is not in the valid range. The range of valid IPs is "
            "10.96.0.0/12")
    # Automatic allocation skips the taken one; a dry run allocates nothing.
    dry = core.create_namespaced_service("default", _svc("dry", clusterIP="10.96.7.7",
                                                         ports=[{"port": 80}]), dry_run="All")
    assert dry.spec.cluster_ip == "10.96.7.7"
    core.create_namespaced_service("default", _svc("wet", clusterIP="10.96.7.7",
                                                   ports=[{"port": 80}]))


def test_headless_without_selector_lists_both_families(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_service("default", _svc("h", clusterIP="None"))
    assert (made.spec.ip_family_policy, made.spec.ip_families) == (
        "RequireDualStack", ["IPv4", "IPv6"])
    selected = core.create_namespaced_service("default", _svc("hs", clusterIP="None",
                                                              selector={"a": "b"}))
    assert (selected.spec.ip_family_policy, selected.spec.ip_families) == (
        "SingleStack", ["IPv4"])


# ---------------------------------------------------------------------------------- updates
def test_cluster_ip_may_not_change_once_set(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_service("default", _svc("web", ports=[{"port": 80}]))
    ip = made.spec.cluster_ip
    body = refused(lambda: core.patch_namespaced_service(
        "web", "default", {"spec": {"clusterIP": "10.96.9.9"}}))
    assert body["message"] == ('Service "web" is invalid: spec.clusterIPs[0]: Invalid value: '
                               '[]string{"10.96.9.9"}: may not change once set')
    body = refused(lambda: core.patch_namespaced_service(
        "web", "default", {"spec": {"clusterIPs": ["10.96.9.9"]}}))
    assert _causes(body) == [("FieldValueInvalid", "spec.clusterIPs", 'Invalid value: '
                              '[]string{"10.96.9.9"}: first value must match `clusterIP`')]
    # A write that leaves them out keeps them; "" is "left out" too.
    kept = core.patch_namespaced_service("web", "default", {"spec": {"clusterIP": ""}})
    assert kept.spec.cluster_ips == [ip]
    body = refused(lambda: core.patch_namespaced_service(
        "web", "default", {"spec": {"ports": [{"port": 80, "protocol": "ICMP"}]}}))
    assert _causes(body) == [("FieldValueNotSupported", "spec.ports[0].protocol",
                              'Unsupported value: "ICMP": supported values: "SCTP", "TCP", '
                              '"UDP"')]


def test_changing_to_external_name_and_back(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_service("default", _svc("web", type="NodePort",
                                                          ports=[{"name": "h", "port": 80}]))
    ext = core.patch_namespaced_service("web", "default", {"spec": {
        "type": "ExternalName", "externalName": "example.com"}})
    spec = ext.spec
    assert (spec.cluster_ip, spec.cluster_ips, spec.ip_families, spec.ip_family_policy) == (
        None, None, None, None)
    assert spec.ports[0].node_port is None and spec.external_traffic_policy is None
    back = core.patch_namespaced_service("web", "default", {"spec": {"type": "ClusterIP"}})
    assert back.spec.cluster_ip and back.spec.cluster_ips == [back.spec.cluster_ip]
    assert back.spec.ip_families == ["IPv4"]
    # Naming a new IP on the way to ExternalName is refused rather than dropped.
    core.patch_namespaced_service("web", "default", {"spec": {"type": "NodePort"}})
    body = refused(lambda: core.patch_namespaced_service("web", "default", {"spec": {
        "type": "ExternalName", "externalName": "example.com", "clusterIP": "10.96.9.9"}}))
    assert ("FieldValueForbidden", "spec.clusterIPs",
            "Forbidden: may not be set for ExternalName services") in _causes(body)
    assert made.spec.cluster_ip != ""


def test_node_ports_are_kept_by_port_name(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_service("default", _svc("np", type="NodePort", ports=[
        {"name": "http", "port": 80}, {"name": "https", "port": 443}]))
    ports = {p.name: p.node_port for p in made.spec.ports}
    body = {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "np", "resourceVersion": made.metadata.resource_version},
            "spec": {"type": "NodePort", "ports": [{"name": "https", "port": 8443},
                                                   {"name": "http", "port": 8080}]}}
    replaced = core.replace_namespaced_service("np", "default", body)
    assert {p.name: p.node_port for p in replaced.spec.ports} == ports


def test_kubectl_apply_of_a_service_twice(quiet: SimulatedClusters, kube: Kubectl) -> None:
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80},
                                                           {"name": "metrics", "port": 9090}]}}
    for _ in range(2):
        done = kube("apply", "-f", "-", input=json.dumps(doc), check=False)
        assert done.returncode == 0, done.stderr
    bad = dict(doc, spec={**doc["spec"], "ports": [{"port": 80}, {"port": 81}]})
    done = kube("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert done.returncode != 0
    assert 'The Service "web" is invalid' in done.stderr
    assert "spec.ports[0].name: Required value" in done.stderr
    stored = quiet.store("source").get("Service", "default", "web")
    assert [p["name"] for p in stored["spec"]["ports"]] == ["http", "metrics"]


def test_kubectl_create_service_and_its_refusals(kube: Kubectl) -> None:
    done = kube("create", "service", "nodeport", "web", "--tcp=80:8080", check=False)
    assert done.returncode == 0, done.stderr
    done = kube("get", "service", "web", "-o", "json")
    spec = json.loads(done.stdout)["spec"]
    assert spec["ports"][0]["name"] == "80-8080" and spec["ports"][0]["targetPort"] == 8080
    assert 30000 <= spec["ports"][0]["nodePort"] <= 32767
    done = kube("create", "service", "clusterip", "fixed", "--tcp=80",
                f"--clusterip={spec['clusterIP']}", check=False)
    assert done.returncode != 0
    # kubectl create service sends protobuf and words the error its own way.
    assert done.stderr == (
        'error: failed to create ClusterIP service: Service "fixed" is invalid: spec.clusterIPs: '
        f'Invalid value: []string{{"{spec["clusterIP"]}"}}: failed to allocate IP '
        f'{spec["clusterIP"]}: provided IP is already allocated\n')
    kube("create", "service", "externalname", "ext", "--external-name=db.example.com")
    ext = json.loads(kube("get", "service", "ext", "-o", "json").stdout)["spec"]
    assert ext["type"] == "ExternalName" and "clusterIP" not in ext and "ipFamilies" not in ext


def test_server_side_apply_of_a_service_and_its_change_of_type(kube: Kubectl) -> None:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                           "spec": {"type": "NodePort", "selector": {"app": "web"},
                                    "ports": [{"name": "http", "port": 80}]}}
    for port in (80, 8080):
        doc["spec"]["ports"][0]["port"] = port
        done = kube("apply", "--server-side", "-f", "-", input=json.dumps(doc), check=False)
        assert done.returncode == 0, done.stderr
    spec = json.loads(kube("get", "service", "web", "-o", "json").stdout)["spec"]
    assert spec["ports"][0]["port"] == 8080 and spec["ports"][0]["nodePort"] >= 30000
    # Becoming ExternalName drops the allocated IP and node port.
    doc["spec"] = {"type": "ExternalName", "externalName": "db.example.com"}
    done = kube("apply", "--server-side", "-f", "-", input=json.dumps(doc), check=False)
    assert done.returncode == 0, done.stderr
    spec = json.loads(kube("get", "service", "web", "-o", "json").stdout)["spec"]
    assert spec["type"] == "ExternalName" and "clusterIP" not in spec
    doc["spec"] = {"type": "ClusterIP", "clusterIP": "10.96.300.1", "ports": [{"port": 80}]}
    done = kube("apply", "--server-side", "-f", "-", input=json.dumps(doc), check=False)
    assert done.returncode != 0
    assert ('The Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "10.96.300.1": '
            f"{INVALID_IP}") in done.stderr


def test_spec_values_of_the_wrong_json_type_are_bad_requests(quiet: SimulatedClusters,
                                                             kube: Kubectl) -> None:
    prefix = 'Service in version "v1" cannot be handled as a Service: json: cannot unmarshal'
    cases = [
        ({"ports": [{"port": "80"}]},
         "string into Go struct field ServicePort.spec.ports.port of type int32"),
        ({"ports": [{"port": 80, "targetPort": True}]},
         "bool into Go struct field ServicePort.spec.ports.targetPort of type int32"),
        ({"ports": [{"port": 80.5}]},
         "number 80.5 into Go struct field ServicePort.spec.ports.port of type int32"),
        ({"type": 1, "ports": [{"port": 80}]},
         "number into Go struct field ServiceSpec.spec.type of type v1.ServiceType"),
        ({"ports": {"port": 80}},
         "object into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort"),
        ({"selector": {"app": 1}, "ports": [{"port": 80}]},
         "number into Go struct field ServiceSpec.spec.selector of type string"),
        ({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": "1"}}},
         "string into Go struct field ClientIPConfig.spec.sessionAffinityConfig.clientIP."
         "timeoutSeconds of type int32")]
    for spec, message in cases:
        code, _, body = _raw(quiet, "POST", "/api/v1/namespaces/default/services",
                             _svc("web", **spec))
        assert (code, body["reason"], body["message"]) == (
            400, "BadRequest", f"{prefix} {message}"), spec
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"ports": [{"port": "80"}]}}
    done = kube("apply", "-f", "-", input=json.dumps(doc), check=False)
    assert done.returncode != 0
    assert (f"{prefix} string into Go struct field ServicePort.spec.ports.port of type int32"
            in done.stderr)


def test_every_service_reads_back_with_an_empty_load_balancer_status(
        quiet: SimulatedClusters, kube: Kubectl) -> None:
    kube("create", "service", "clusterip", "web", "--tcp=80")
    got = json.loads(kube("get", "service", "web", "-o", "json",
                          "--show-managed-fields").stdout)
    assert got["status"] == {"loadBalancer": {}}
    # Not a field anyone manages: status is reset by the strategy.
    assert all("f:status" not in (m.get("fieldsV1") or {})
               for m in got["metadata"]["managedFields"])
    dry = json.loads(kube("create", "service", "clusterip", "dry", "--tcp=80", "--dry-run=server",
                          "-o", "json").stdout)
    assert dry["status"] == {"loadBalancer": {}}
    quiet.store("source").create("Service", {"metadata": {"name": "seeded", "namespace": "default"},
                                             "spec": {"ports": [{"port": 80}]}})
    assert quiet.store("source").get("Service", "default", "seeded")["status"] == {
        "loadBalancer": {}}


def test_load_balancer_status_writes(core: client.CoreV1Api) -> None:
    core.create_namespaced_service("default", _svc("web", ports=[{"port": 80}]))
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}
    body = refused(lambda: core.patch_namespaced_service_status("web", "default", ingress))
    assert body["message"] == ('Service "web" is invalid: status.loadBalancer.ingress: '
                               "Forbidden: may only be used when `spec.type` is 'LoadBalancer'")
    core.create_namespaced_service("default", _svc("lb", type="LoadBalancer",
                                                   ports=[{"port": 80}]))
    done = core.patch_namespaced_service_status("lb", "default", ingress)
    assert done.status.load_balancer.ingress[0].ip_mode == "VIP"  # defaulted
    bad = {"status": {"loadBalancer": {"ingress": [
        {"ip": "192.0.2.300"}, {"hostname": "10.0.0.1", "ipMode": "Proxy"},
        {"ip": "192.0.2.11", "ipMode": "Tunnel"}]}}}
    body = refused(lambda: core.patch_namespaced_service_status("lb", "default", bad))
    assert _causes(body) == [
        ("FieldValueInvalid", "status.loadBalancer.ingress[0].ip",
         f'Invalid value: "192.0.2.300": {INVALID_IP}'),
        ("FieldValueForbidden", "status.loadBalancer.ingress[1].ipMode",
         "Forbidden: may not be specified when `ip` is not set"),
        ("FieldValueInvalid", "status.loadBalancer.ingress[1].hostname",
         'Invalid value: "10.0.0.1": must be a DNS name, not an IP address'),
        ("FieldValueNotSupported", "status.loadBalancer.ingress[2].ipMode",
         'Unsupported value: "Tunnel": supported values: "Proxy", "VIP"')]


def test_the_kubernetes_service_holds_the_first_ip(core: client.CoreV1Api) -> None:
    svc = core.read_namespaced_service("kubernetes", "default")
    assert (svc.spec.cluster_ip, svc.spec.ports[0].port, svc.spec.ports[0].target_port) == (
        "10.96.0.1", 443, 6443)
    assert svc.metadata.labels == {"component": "apiserver", "provider": "kubernetes"}
    assert svc.metadata.managed_fields[0].manager == "kube-apiserver"
    body = _create(core, _svc("api", clusterIP="10.96.0.1", ports=[{"port": 80}]))
    assert body["details"]["causes"][0]["message"].endswith(
        "failed to allocate IP 10.96.0.1: provided IP is already allocated")
