"""Every request gives its connection back to the pool: a run reuses a handful of keep-alive
connections instead of making one TLS connection per write (docs/performance.md).

Counted with urllib3's own log line for a new connection ("Starting new HTTPS connection").
"""
from __future__ import annotations

import logging

import pytest

from statemachine import errors
from statemachine.k8s import ObjectRef
from statemachine.k8s.client import KubeCluster


def _cm(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {"k": "v"}}


def test_writes_reads_and_errors_reuse_one_connection(kube: KubeCluster,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    kube.served("v1", "ConfigMap")  # discovery first: it has connections of its own to make
    kube.fetch(ObjectRef("v1", "ConfigMap", "default", "warm-up"))
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        for i in range(5):
            ref = ObjectRef("v1", "ConfigMap", "default", f"c{i}")
            kube.create(_cm(f"c{i}"))
            with pytest.raises(errors.Conflict):
                kube.create(_cm(f"c{i}"))
            kube.patch(ref, {"data": {"k": "w"}})
            assert kube.fetch(ref) is not None
            assert kube.delete(ref) is True
            assert kube.delete(ref) is False  # 404
            kube.list("v1", "ConfigMap", namespace="default")
            kube.can_i("create", "v1", "ConfigMap", "default")
    new = [r for r in caplog.records if "Starting new" in r.getMessage()]
    assert new == [], [r.getMessage() for r in new]


def test_the_kubeconfig_refresh_hook_runs_at_most_once_a_second(
        kube: KubeCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # The client runs the loader's hook before every request; it re-applies the whole kubeconfig
    # (and re-reads the proxy environment). Once a second renews a token in time all the same.
    from kubernetes.config import kube_config

    calls: list[int] = []
    original = kube_config.KubeConfigLoader._set_config

    def counting(self: object, client_configuration: object) -> None:
        calls.append(1)
        original(self, client_configuration)  # type: ignore[arg-type]

    monkeypatch.setattr(kube_config.KubeConfigLoader, "_set_config", counting)
    ref = ObjectRef("v1", "ConfigMap", "default", "absent")
    for _ in range(50):
        assert kube.fetch(ref) is None
    assert len(calls) <= 2, len(calls)
