"""KubeCluster against the simulated API server: CRUD, errors, patch types, can_i, faults."""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from statemachine import errors
from statemachine.k8s import ObjectRef
from statemachine.k8s.client import KubeCluster, connect
from statemachine.k8s.retry import RetryPolicy
from statemachine.sim.faults import FaultInjector


def configmap(name: str, ns: str = "default", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": {"k": "v"}}


def test_create_get_list_patch_delete_round_trip(kube: KubeCluster) -> None:
    created = kube.create(configmap("a", app="x"))
    kube.create(configmap("b", app="y"))
    ref = ObjectRef("v1", "ConfigMap", "default", "a")
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    got = kube.get(ref)
    assert got is not None and got["data"] == {"k": "v"}

    listed = kube.list("v1", "ConfigMap", namespace="default", label_selector="app=x")
    assert [o["metadata"]["name"] for o in listed] == ["a"]
    assert listed[0]["kind"] == "ConfigMap" and listed[0]["apiVersion"] == "v1"

    merged = kube.patch(ref, {"data": {"k": None, "m": "1"}})
    assert merged["data"] == {"m": "1"}
    jsoned = kube.patch(ref, [{"op": "add", "path": "/data/j", "value": "2"}], patch_type="json")
    assert jsoned["data"] == {"m": "1", "j": "2"}

    assert kube.delete(ref) is True
    assert kube.get(ref) is None
    assert kube.delete(ref) is False

    stats = kube.stats()
    assert stats["create"] == 2 and stats["patch"] == 2 and stats["delete"] == 2
    assert stats["get"] == 2 and stats["list"] == 1


def test_duplicate_create_is_a_conflict(kube: KubeCluster) -> None:
    kube.create(configmap("dup"))
    with pytest.raises(errors.Conflict) as info:
        kube.create(configmap("dup"))
    assert info.value.status == 409 and "dup" in str(info.value)
    assert kube.stats()["create"] == 2  # a first-try 409 is not retried


def test_dry_run_create_persists_nothing(kube: KubeCluster) -> None:
    out = kube.create(configmap("dry"), dry_run=True)
    assert out["metadata"]["name"] == "dry"
    assert kube.get(ObjectRef("v1", "ConfigMap", "default", "dry")) is None


def test_custom_resource_merge_patch_uses_an_explicit_content_type(kube: KubeCluster) -> None:
    vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
          "metadata": {"name": "vm-1", "namespace": "default"},
          "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}}}
    kube.create(vm)
    ref = ObjectRef.of(vm)
    # DynamicClient's default (strategic merge) would be answered 415 for a custom resource.
    patched = kube.patch(ref, {"metadata": {"labels": {"smrun.io/plan": "p"}}})
    assert patched["metadata"]["labels"] == {"smrun.io/plan": "p"}


def test_bad_json_patch_is_invalid_and_unknown_patch_type_rejected(kube: KubeCluster) -> None:
    kube.create(configmap("jp"))
    ref = ObjectRef("v1", "ConfigMap", "default", "jp")
    with pytest.raises(errors.Invalid):
        kube.patch(ref, [{"op": "replace", "path": "/data/missing/deep", "value": "x"}],
                   patch_type="json")
    with pytest.raises(ValueError):
        kube.patch(ref, {}, patch_type="strategic")  # type: ignore[arg-type]


def test_kinds_served_and_unknown_kinds(kube: KubeCluster) -> None:
    assert kube.served("kubevirt.io/v1", "VirtualMachine")
    assert kube.served("v1", "ConfigMap")
    assert not kube.served("example.com/v1", "Widget")
    with pytest.raises(errors.NotFound, match="Widget"):
        kube.get(ObjectRef("example.com/v1", "Widget", "default", "w"))
    with pytest.raises(errors.Invalid, match="namespace"):
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "no-ns"}})


def test_discovery_is_cached_in_the_given_directory_only(kube: KubeCluster,
                                                         tmp_path: Path) -> None:
    kube.get(ObjectRef("v1", "ConfigMap", "default", "nothing"))
    kube.close()  # the file is written when the cluster is closed (test_discovery_lookups.py)
    files = list(tmp_path.glob("cache-source-*/discovery-source-*.json"))
    assert len(files) == 1 and files[0].stat().st_size > 0


def test_missing_kubeconfig_or_context_is_one_clear_line(sim: Any, tmp_path: Path) -> None:
    with pytest.raises(errors.DefinitionError, match="kubeconfig file not found"):
        connect(name="x", kubeconfig=tmp_path / "nope", cache_dir=tmp_path)
    with pytest.raises(errors.DefinitionError) as info:
        connect(name="x", kubeconfig=sim.kubeconfig_path, context="moon", cache_dir=tmp_path)
    assert "moon" in str(info.value) and "\n" not in str(info.value)


def _kubeconfig(tmp_path: Path, port: int) -> Path:
    """A kubeconfig whose only context points at plain http on ``port`` of the loopback."""
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
              "users": [{"name": "u", "user": {"token": "t"}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_unreachable_server_is_cluster_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _kubeconfig(tmp_path, port)
    with pytest.raises(errors.ClusterUnreachable) as info:
        connect(name="gone", kubeconfig=path, cache_dir=tmp_path,
                retry_policy=RetryPolicy(attempts=2, base=0.01))
    assert "gone" in str(info.value) and info.value.exit_code == 3



def test_each_of_smruns_tries_is_one_connection(tmp_path: Path) -> None:
    """urllib3 does not retry a failed connection underneath smrun's own retries (it did, three
    times: every try of smrun's policy was four connections). Here a server that accepts and
    closes at once: each TLS handshake fails."""
    import threading

    accepted = []
    stop = threading.Event()
    with socket.socket() as rude:
        rude.bind(("127.0.0.1", 0))
        rude.listen(8)
        rude.settimeout(0.05)
        port = rude.getsockname()[1]

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = rude.accept()
                except TimeoutError:
                    continue
                accepted.append(1)
                conn.close()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        path = _kubeconfig(tmp_path, port)
        path.write_text(path.read_text().replace("http://", "https://"))
        try:
            with pytest.raises(errors.ClusterUnreachable):
                connect(name="rude", kubeconfig=path, cache_dir=tmp_path,
                        retry_policy=RetryPolicy(attempts=3, base=0.01))
        finally:
            stop.set()
            server.join(timeout=5)
    assert len(accepted) == 3


def test_a_server_that_never_answers_does_not_hang_discovery(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamicClient's own discovery requests carry no timeout; the pool default bounds them."""
    import time

    from statemachine.k8s import client
    monkeypatch.setattr(client, "_REQUEST_TIMEOUT", (1, 1))
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        path = _kubeconfig(tmp_path, port)
        started = time.monotonic()
        with pytest.raises(errors.ClusterUnreachable):
            connect(name="mute", kubeconfig=path, cache_dir=tmp_path,
                    retry_policy=RetryPolicy(attempts=2, base=0.01))
        assert time.monotonic() - started < 15


RBAC_SEED = {
    "source": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "read-cm", "namespace": "apps"},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "viewer-read-cm", "namespace": "apps"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cm"},
         "subjects": [{"kind": "User", "name": "viewer"}]},
        # Real clusters let every authenticated user create SelfSubjectAccessReviews
        # (system:basic-user); the simulator needs it granted explicitly.
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "self-review"},
         "rules": [{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews"], "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "viewer-self-review"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "self-review"},
         "subjects": [{"kind": "User", "name": "viewer"}]},
    ],
    "target": [],
}


def test_can_i_answers_for_a_restricted_user(make_sim: Callable[..., Any],
                                             make_kube: Callable[..., KubeCluster]) -> None:
    sim = make_sim(seed=RBAC_SEED, controllers=False)
    viewer = make_kube(sim, context="source-viewer")
    admin = make_kube(sim, context="source")
    assert viewer.can_i("get", "v1", "ConfigMap", "apps")
    assert viewer.can_i("list", "v1", "ConfigMap", "apps")
    assert not viewer.can_i("create", "v1", "ConfigMap", "apps")
    assert not viewer.can_i("get", "v1", "ConfigMap", "default")
    assert not viewer.can_i("delete", "kubevirt.io/v1", "VirtualMachine", "apps")
    assert admin.can_i("create", "kubevirt.io/v1", "VirtualMachine", "apps")
    with pytest.raises(errors.Forbidden) as info:
        viewer.create(configmap("x", ns="apps"))
    assert info.value.status == 403 and "viewer" in str(info.value)
    assert viewer.stats()["create"] == 1  # permanent: not retried


def test_faults_are_retried_logged_and_never_create_twice(
        make_sim: Callable[..., Any], make_kube: Callable[..., KubeCluster],
        caplog: pytest.LogCaptureFixture) -> None:
    sim = make_sim(fault_rate=0.2, fault_seed=3, controllers=False)
    with caplog.at_level(logging.WARNING, logger="statemachine.k8s"):
        cluster = make_kube(sim)
        # From here on, seed 14 drops the first create's connection and answers 429 and 500 to
        # later requests. A fresh injector after the connect keeps that order whatever number
        # of discovery requests the connect made (it grows as the simulator serves more groups).
        sim.servers["source"].faults = FaultInjector(0.2, seed=14)
        for i in range(8):
            cluster.create(configmap(f"f-{i}", run="faults"))
            got = cluster.get(ObjectRef("v1", "ConfigMap", "default", f"f-{i}"))
            assert got is not None
    stored = sim.store("source").list("ConfigMap", "default")
    names = sorted(o["metadata"]["name"] for o in stored
                   if (o["metadata"].get("labels") or {}).get("run") == "faults")
    assert names == sorted(f"f-{i}" for i in range(8))
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert retries, "with a 20% fault rate some request must have been retried"
    assert all(r.levelno == logging.WARNING for r in retries)
    assert any("status 429" in r.getMessage() or "status 500" in r.getMessage()
               for r in retries)
    assert any(r.getMessage().startswith("retrying create ConfigMap default/f-")
               for r in retries)
    stats = cluster.stats()
    assert stats["create"] + stats["get"] > 16  # the retried attempts are counted too


def test_a_wrong_token_is_forbidden_at_connect(sim: Any, tmp_path: Path) -> None:
    config = yaml.safe_load(sim.kubeconfig_path.read_text())
    for user in config["users"]:
        user["user"]["token"] = "not-a-valid-token"
    path = tmp_path / "bad-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(errors.Forbidden) as info:
        connect(name="source", kubeconfig=path, context="source", cache_dir=tmp_path / "c")
    assert info.value.status == 401
    assert "not-a-valid-token" not in str(info.value)


def test_two_threads_loading_one_ca_both_get_the_whole_file(tmp_path: Path) -> None:
    """The two sides of a plan are connected at the same time (clusters.connect_plan) and often
    share one CA (one cluster, or the simulated clusters' certificate). The kubernetes loader
    shares its temporary CA files by content and names one before writing it: without
    client._KUBECONFIG_LOCK a thread got an empty file and its first handshake failed."""
    import base64
    import os
    import threading

    from statemachine.k8s.client import _load_kube_config

    for round_ in range(100):
        ca = f"-----BEGIN CERTIFICATE-----\n{os.urandom(600).hex()}\n-----END CERTIFICATE-----\n"
        data = base64.b64encode(ca.encode()).decode()
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "a",
                  "clusters": [{"name": n, "cluster": {"server": "https://127.0.0.1:1",
                                                       "certificate-authority-data": data}}
                               for n in ("a", "b")],
                  "users": [{"name": "u", "user": {"token": "t"}}],
                  "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}}
                               for n in ("a", "b")]}
        path = tmp_path / f"kubeconfig-{round_}"
        path.write_text(yaml.safe_dump(config))
        start = threading.Barrier(2)
        seen: dict[str, str] = {}

        def load(context: str) -> None:
            start.wait()
            cfg = _load_kube_config(path, context)
            seen[context] = Path(cfg.ssl_ca_cert).read_text()

        threads = [threading.Thread(target=load, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == {"a": ca, "b": ca}, f"round {round_}"
