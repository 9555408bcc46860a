"""A kind's first use fetches the resource list of its own group version only (issue 17).

The client's lazy discoverer, asked for ``v1``/``Namespace`` without a prefix, matched every
group that serves a ``v1`` (events.k8s.io, batch, rbac, storage, ...) and fetched each one's list:
twelve sequential requests per cluster before smrun's first read. Counted here with urllib3's
own log line for each request, against a simulated cluster.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine.k8s import ObjectRef
from statemachine.k8s.client import KubeCluster, connect

_REQUEST = re.compile(r'"GET (\S+) HTTP')


def _gets(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m.group(1) for r in caplog.records if (m := _REQUEST.search(r.getMessage()))]


def test_a_kinds_first_use_fetches_only_its_group_version(
        sim: Any, make_kube: Callable[..., KubeCluster],
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        kube = make_kube(sim)
        assert kube.fetch(ObjectRef("v1", "Namespace", "", "kube-system")) is not None
        assert kube.served("kubevirt.io/v1", "VirtualMachine")
        assert kube.resource_of("v1", "ConfigMap") == ("configmaps", True)  # already listed
    discovery = [p for p in _gets(caplog) if not p.startswith("/api/v1/namespaces")]
    assert discovery == ["/version", "/apis", "/api/v1", "/apis/kubevirt.io/v1"]


def test_a_kind_no_group_version_serves_is_still_not_served(
        sim: Any, make_kube: Callable[..., KubeCluster]) -> None:
    kube = make_kube(sim)
    assert not kube.served("v1", "VirtualMachine")  # a kubevirt.io kind, asked as core
    assert not kube.served("kubevirt.io/v1", "Namespace")  # a core kind, asked in a group
    assert kube.resource_of("batch/v1", "Job") == ("jobs", True)



def test_the_discovery_cache_file_is_written_once_at_close(
        sim: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    kube = connect(name="source", kubeconfig=sim.kubeconfig_path, context="source",
                   cache_dir=cache)
    try:
        assert kube.served("kubevirt.io/v1", "VirtualMachine")
        assert kube.served("v1", "ConfigMap")
        assert list(cache.glob("discovery-*.json")) == []  # not rewritten per group version
    finally:
        kube.close()
    (written,) = cache.glob("discovery-*.json")
    assert "kubevirt.io" in json.dumps(json.loads(written.read_text())["resources"])
    # The next connection to the same server reads it: nothing is discovered again.
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        again = connect(name="source", kubeconfig=sim.kubeconfig_path, context="source",
                        cache_dir=cache)
        try:
            assert again.served("kubevirt.io/v1", "VirtualMachine")
            assert again.served("v1", "ConfigMap")
        finally:
            again.close()
    assert _gets(caplog) == []
