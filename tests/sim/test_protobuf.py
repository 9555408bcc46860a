"""Kubernetes protobuf request bodies: the wire decoder, and a raw protobuf create over HTTPS.

The bodies are built here with a minimal encoder that follows the protobuf wire format, field
numbers as in apiserver-fidelity.md §11.2; kubectl's own bodies are covered by test_imperative.
"""
from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from statemachine.sim import protobuf
from statemachine.sim.cluster import SimulatedClusters
from statemachine.sim.kinds import lookup

PROTOBUF = "application/vnd.kubernetes.protobuf"


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _len(number: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _entry(number: int, key: str, value: bytes | str) -> bytes:
    return _len(number, _len(1, key) + _len(2, value))


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + _len(1, _len(1, api_version) + _len(2, kind)) + _len(2, raw)


def _configmap_raw(name: str) -> bytes:
    meta = (_len(1, name) + _len(2, "") + _entry(11, "app", "demo") +
            _entry(12, "note", "x=y") + _len(14, "f1") +
            _len(8, _int(1, -62135596800 & ((1 << 64) - 1))) +  # zero Time, as Go sends it
            _int(99, 7) + _len(98, b"unknown field"))  # unknown fields are skipped
    return (_len(1, meta) + _entry(2, "k", "v") + _entry(3, "bin", b"\x00\xff") +
            _int(4, 0))  # immutable: a pointer bool, sent as false


def test_configmap_decodes_as_its_json() -> None:
    obj = protobuf.decode_object(_envelope("v1", "ConfigMap", _configmap_raw("cm")),
                                 lookup("v1", "ConfigMap"))
    assert obj == {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm", "labels": {"app": "demo"},
                                "annotations": {"note": "x=y"}, "finalizers": ["f1"]},
                   "data": {"k": "v"}, "binaryData": {"bin": "AP8="}, "immutable": False}


def test_service_decodes_with_int_or_string_target_ports() -> None:
    def port(name: str, number: int, target: bytes) -> bytes:
        return _len(1, name) + _len(2, "TCP") + _int(3, number) + _len(4, target) + _int(5, 0)
    spec = (_len(1, port("http", 80, _int(1, 0) + _int(2, 8080) + _len(3, ""))) +
            _len(1, port("web", 81, _int(1, 1) + _int(2, 0) + _len(3, "web"))) +
            _len(1, port("same", 82, b"")) +  # an unset targetPort: the zero IntOrString
            _entry(2, "app", "demo") + _len(3, "None") + _len(4, "ClusterIP") +
            _len(17, "SingleStack") + _int(13, 0))
    obj = protobuf.decode_object(_envelope("v1", "Service", _len(1, _len(1, "web")) +
                                           _len(2, spec)), lookup("v1", "Service"))
    assert obj == {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80,
                                       "targetPort": 8080},
                                      {"name": "web", "protocol": "TCP", "port": 81,
                                       "targetPort": "web"},
                                      {"name": "same", "protocol": "TCP", "port": 82}],
                            "selector": {"app": "demo"}, "clusterIP": "None",
                            "type": "ClusterIP", "ipFamilyPolicy": "SingleStack"}}


def test_negative_ints_fixed_fields_and_review_messages() -> None:
    spec = _len(1, _len(1, "ns") + _len(2, "get") + _len(5, "pods") + _len(6, "log") +
                _len(8, _len(1, "spec.nodeName=n1")))
    fixed = _varint(30 << 3 | 5) + bytes(4) + _varint(31 << 3 | 1) + bytes(8)  # skipped
    raw = _len(1, _int(7, -3) + fixed) + _len(2, spec)
    obj = protobuf.decode_object(_envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview",
                                           raw), lookup("authorization.k8s.io/v1",
                                                        "SelfSubjectAccessReview"))
    assert obj["metadata"] == {"generation": -3}
    assert obj["spec"] == {"resourceAttributes": {
        "namespace": "ns", "verb": "get", "resource": "pods", "subresource": "log",
        "fieldSelector": {"rawSelector": "spec.nodeName=n1"}}}


@pytest.mark.parametrize("body,message", [
    (b"{}", "provided data does not appear to be a protobuf message, expected prefix "
            "[107 56 115 0]"),
    (b"k8s\x00\x0a\x05ab", "unexpected EOF"),
    (b"k8s\x00\x0b", "proto: illegal wireType 3"),
    (b"k8s\x00" + b"\x80" * 12, "proto: integer overflow"),
])
def test_malformed_bodies_raise_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(protobuf.DecodeError, match=message.replace("[", r"\[")):
        protobuf.decode_object(body, lookup("v1", "ConfigMap"))


def test_a_kind_without_a_message_table_is_unsupported() -> None:
    with pytest.raises(protobuf.Unsupported):
        protobuf.decode_object(_envelope("batch/v1", "Job", b""), lookup("batch/v1", "Job"))


def test_protobuf_create_over_https(make_sim: Callable[..., SimulatedClusters],
                                    tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    sim = make_sim(controllers=False, request_log=log)
    ctx = ssl.create_default_context(cafile=str(sim.ca_path))
    conn = http.client.HTTPSConnection("127.0.0.1", sim.servers["source"].port, context=ctx)
    headers = {"Authorization": f"Bearer {sim.token('source')}", "Content-Type": PROTOBUF,
               "Accept": f"{PROTOBUF},application/json"}
    conn.request("POST", "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create",
                 body=_envelope("v1", "ConfigMap", _configmap_raw("raw")), headers=headers)
    resp = conn.getresponse()
    created = json.loads(resp.read())
    assert resp.status == 201 and resp.getheader("Content-Type") == "application/json"
    assert created["metadata"]["labels"] == {"app": "demo"}
    assert sim.store("source").get("ConfigMap", "default", "raw")["binaryData"] == {"bin": "AP8="}
    # A kind the simulator has no protobuf table for: 415, as before, and the connection lives.
    conn.request("POST", "/apis/batch/v1/namespaces/default/jobs",
                 body=_envelope("batch/v1", "Job", b""), headers=headers)
    resp = conn.getresponse()
    status = json.loads(resp.read())
    assert (resp.status, status["reason"]) == (415, "UnsupportedMediaType")
    conn.request("POST", "/api/v1/namespaces/default/configmaps",
                 body=_envelope("v1", "Secret", _configmap_raw("wrong")), headers=headers)
    resp = conn.getresponse()
    wrong = json.loads(resp.read())
    assert resp.status == 400 and wrong["reason"] == "BadRequest", wrong
    # A client that accepts protobuf only is told that answers are JSON (nothing is created).
    conn.request("POST", "/api/v1/namespaces/default/configmaps",
                 body=_envelope("v1", "ConfigMap", _configmap_raw("pb-only")),
                 headers={**headers, "Accept": PROTOBUF})
    resp = conn.getresponse()
    status = json.loads(resp.read())
    assert (resp.status, status["reason"], status["message"]) == (
        406, "NotAcceptable", "only the following media types are accepted: application/json")
    assert sim.store("source").try_get("ConfigMap", "default", "pb-only") is None
    conn.close()
    sim.stop()
    posts = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["name"], r["status"]) for r in posts if r["method"] == "POST"][:2] == [
        ("raw", 201), ("", 415)]  # the request log names a protobuf create too
