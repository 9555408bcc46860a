"""In-cluster configuration (issue 12, item 2): in a pod, without a kubeconfig, every part of the
operator (smrun's client, kopf's login, the kubeconfig written for a Plan's own-cluster side)
reaches the API server from ``KUBERNETES_SERVICE_HOST``/``_PORT`` with the service account's
token and CA.

A simulated cluster stands in for the pod's cluster: the printed install (ServiceAccount,
ClusterRole, binding) is applied, a token is requested for the operator's ServiceAccount, and the
files a kubelet mounts are written to a directory that ``statemachine.k8s.SERVICE_ACCOUNT_DIR``
points at. Requests must then carry the service account's identity (its Forbidden names it) and
the derived ClusterRole must let it read Plans.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from statemachine import k8s
from statemachine.errors import ClusterError
from statemachine.operator.manifests import DEFAULT_NAMESPACE, NAME
from statemachine.sim.cluster import SimulatedClusters

pytest.importorskip("kopf")

SMRUN = [sys.executable, "-m", "statemachine"]
SA_USER = f"system:serviceaccount:{DEFAULT_NAMESPACE}:{NAME}"


@pytest.fixture
def pod(sim: SimulatedClusters, kubectl: Callable[..., Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Path:
    """The source cluster with the operator installed, and this process set up as its pod."""
    printed = subprocess.run([*SMRUN, "operator", "manifests"], capture_output=True, text=True,
                             check=True).stdout
    docs = [d for d in yaml.safe_load_all(printed)
            if d["kind"] not in ("Deployment", "PodDisruptionBudget")]
    (tmp_path / "install.yaml").write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    kubectl("apply", "-f", str(tmp_path / "install.yaml"))
    kubectl("wait", "--for=condition=Established", "crd/plans.smrun.io", "--timeout=10s")
    token = kubectl("create", "token", NAME, "-n", DEFAULT_NAMESPACE).stdout.strip()
    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text(token, encoding="utf-8")  # as the kubelet mounts it
    (mount / "namespace").write_text(DEFAULT_NAMESPACE, encoding="utf-8")
    assert sim.ca_path is not None
    shutil.copy(sim.ca_path, mount / "ca.crt")
    url = urlsplit(sim.url("source"))
    monkeypatch.setattr(k8s, "SERVICE_ACCOUNT_DIR", mount)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(url.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(url.port))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return mount


def test_the_client_uses_the_service_account(pod: Path, sim: SimulatedClusters,
                                             tmp_path: Path) -> None:
    from statemachine.k8s.client import connect

    assert k8s.uses_service_account(None)
    api = connect(name="operator", kubeconfig=None, cache_dir=tmp_path / "cache")
    try:
        # The derived ClusterRole lets the operator read Plans...
        assert api.list("smrun.io/v1alpha1", "Plan", namespace="default") == []
        # ...and the server sees the service account, not an administrator.
        with pytest.raises(ClusterError) as refused:
            api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                        "metadata": {"name": "not-for-the-operator"}, "rules": []})
        assert SA_USER in str(refused.value)
    finally:
        api.close()


def test_kopf_logs_in_to_the_same_server_as_the_client(pod: Path, sim: SimulatedClusters) -> None:
    from statemachine.operator.app import connection_info

    info = connection_info(None, None)
    assert info.server == sim.url("source")
    assert info.token == (pod / "token").read_text().strip()
    assert info.ca_path == str(pod / "ca.crt")
    assert info.default_namespace == DEFAULT_NAMESPACE


def test_a_plans_own_cluster_side_gets_a_service_account_kubeconfig(
        pod: Path, sim: SimulatedClusters, tmp_path: Path) -> None:
    from statemachine.operator.credentials import in_cluster_kubeconfig

    path = in_cluster_kubeconfig(tmp_path / "plan" / "in-cluster.kubeconfig")
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert (pod / "token").read_text().strip() not in text  # a path to the token, not the token
    proc = subprocess.run(["kubectl", "--kubeconfig", str(path), "auth", "whoami", "-o",
                           "jsonpath={.status.userInfo.username}"],
                          capture_output=True, text=True, timeout=30,
                          env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == SA_USER


def test_outside_a_pod_without_a_kubeconfig_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from statemachine.errors import DefinitionError
    from statemachine.operator.app import connection_info

    monkeypatch.setattr(k8s, "SERVICE_ACCOUNT_DIR", tmp_path / "absent")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert not k8s.uses_service_account(None)
    with pytest.raises(DefinitionError, match=r"\.kube/config: kubeconfig cannot be read"):
        connection_info(None, None)
