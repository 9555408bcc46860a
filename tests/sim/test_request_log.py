"""The simulator's request log: arrival and end times, the watch flag, a create's name; never a
body, a query or a token."""
from __future__ import annotations

import json
from pathlib import Path

from statemachine.k8s import ObjectRef, ResourceKey
from statemachine.k8s.client import connect
from statemachine.sim.cluster import SimulatedClusters
from tests.polling import wait_for


def test_request_log_has_times_watch_flag_and_created_name(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    with SimulatedClusters(controllers=False, request_log=log,
                           kubeconfig_out=tmp_path / "kubeconfig") as sim:
        c = connect(name="source", kubeconfig=sim.kubeconfig_path, context="source",
                    cache_dir=tmp_path / "cache")
        try:
            secret = {"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "creds", "namespace": "default"},
                      "stringData": {"password": "hunter2"}}
            c.create(secret)
            seen: list[str] = []
            sub = c.watch(ResourceKey("v1", "ConfigMap", "default"), lambda _e, o: seen.append(o))
            c.create({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "cm", "namespace": "default"}})
            wait_for(lambda: len(seen) >= 1, timeout=10)
            assert c.get(ObjectRef("v1", "ConfigMap", "default", "cm")) is not None
            sub.close()
            # A watch is logged when it ends: once the server has noticed the client left.
            wait_for(lambda: '"watch": true' in log.read_text(), timeout=10)
        finally:
            c.close()
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    posts = [r for r in records if r["method"] == "POST" and r["path"].endswith("/secrets")]
    assert [r["name"] for r in posts] == ["creds"] and posts[0]["status"] == 201
    assert all(r["ts"] <= r["end"] for r in records)
    watches = [r for r in records if r["watch"]]
    assert watches and all(r["path"].endswith("/configmaps") for r in watches)
    lists = [r for r in records if r["method"] == "GET" and r["path"].endswith("/configmaps")
             and not r["watch"]]
    assert lists  # the informer's list is told apart from its watch
    assert "hunter2" not in text and "aHVudGVyMg" not in text  # bodies are never logged
    assert "watch=" not in text and "Bearer" not in text  # nor queries, nor tokens
