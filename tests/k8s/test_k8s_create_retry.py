"""A create whose answer was lost is retried without creating twice or adopting a stranger.

The simulator drops connections *before* serving a request, so the "applied, then the answer was
lost" case is scripted here with a stub DynamicClient.
"""
from __future__ import annotations

import copy
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import api_exception

from statemachine import errors
from statemachine.k8s import ObjectRef
from statemachine.k8s.client import MANIFEST_HASH, KubeCluster
from statemachine.k8s.retry import RetryPolicy


class Resource:
    namespaced = True
    group = ""
    name = "configmaps"

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        base = f"/api/v1/namespaces/{namespace}/configmaps"
        return f"{base}/{name}" if name else base


class Response:
    def __init__(self, obj: Any) -> None:
        self.data = json.dumps(obj).encode()


class Resources:
    def get(self, *, prefix: str, api_version: str, kind: str) -> Resource:
        assert prefix == ("apis" if "/" in api_version else "api")  # client.py names the prefix
        return Resource()


def _status_error(code: int, reason: str, message: str) -> ApiException:
    exc = ApiException(status=code, reason=reason)
    exc.body = json.dumps({"kind": "Status", "code": code, "reason": reason, "message": message})
    exc.headers = {"Content-Type": "application/json"}
    return api_exception(exc)


class StubDynamic:
    """Stores objects; the first POST is applied but its connection dropped before the answer."""

    def __init__(self, existing: dict[str, Any] | None = None, lose_first_answer: bool = True,
                 race: dict[str, Any] | None = None):
        self.resources = Resources()
        self.objects: dict[str, Any] = {}
        if existing is not None:
            self.objects[existing["metadata"]["name"]] = existing
        self.lose_first_answer = lose_first_answer
        self.race = race  # stored instead of the body on the lost first try: someone else's
        self.posts = 0

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> Response:
        if method == "post":
            self.posts += 1
            name = body["metadata"]["name"]
            if name in self.objects:
                raise _status_error(409, "AlreadyExists", f'configmaps "{name}" already exists')
            lost = self.lose_first_answer and self.posts == 1
            self.objects[name] = copy.deepcopy(self.race if lost and self.race else body)
            if lost:
                raise urllib3.exceptions.ProtocolError(
                    "Connection aborted.", ConnectionResetError(104, "reset"))
            return Response(body)
        if method == "get":
            name = path.rsplit("/", 1)[1]
            if name not in self.objects:
                raise _status_error(404, "NotFound", f'configmaps "{name}" not found')
            return Response(self.objects[name])
        raise AssertionError(method)


class Closable:
    """The ``ApiClient`` a KubeCluster holds: its server (the messages of failures name it)."""

    configuration = SimpleNamespace(host="https://stub.example:6443")

    def close(self) -> None:
        pass


def manifest(hash_: str = "abc") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "ns", "labels": {"smrun.io/plan": "p"},
                         "annotations": {MANIFEST_HASH: hash_}}}


def cluster(dyn: StubDynamic) -> KubeCluster:
    return KubeCluster("stub", Closable(), dyn, retry_policy=RetryPolicy(base=0.0))


def test_lost_answer_then_409_returns_our_object(caplog: pytest.LogCaptureFixture) -> None:
    dyn = StubDynamic()
    kube = cluster(dyn)
    with caplog.at_level(logging.WARNING, logger="statemachine.k8s"):
        obj = kube.create(manifest())
    assert obj["metadata"]["annotations"][MANIFEST_HASH] == "abc"
    assert len(dyn.objects) == 1 and dyn.posts == 2
    assert kube.stats() == {"discover": 1, "create": 2, "get": 1}
    assert [r.levelno for r in caplog.records if r.getMessage().startswith("retrying")] \
        == [logging.WARNING]


def test_lost_answer_then_409_for_someone_elses_object_is_a_conflict() -> None:
    other = manifest("not-ours")
    dyn = StubDynamic(race=other)  # someone else's object wins the race during our lost try
    with pytest.raises(errors.Conflict):
        cluster(dyn).create(manifest("ours"))
    assert dyn.objects["cm"] == other and dyn.posts == 2


def test_first_try_409_is_a_conflict_without_lookup() -> None:
    dyn = StubDynamic(existing=manifest(), lose_first_answer=False)
    kube = cluster(dyn)
    with pytest.raises(errors.Conflict, match="already exists"):
        kube.create(manifest())
    assert "get" not in kube.stats()


def test_manifest_without_markers_is_never_adopted() -> None:
    dyn = StubDynamic()
    kube = cluster(dyn)
    bare = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"}}
    with pytest.raises(errors.Conflict):
        kube.create(bare)


def test_without_a_hash_all_smrun_labels_must_match() -> None:
    labelled = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "cm", "namespace": "ns",
                             "labels": {"smrun.io/plan": "p", "smrun.io/vm": "vm-1"}}}
    dyn = StubDynamic()
    assert cluster(dyn).create(labelled)["metadata"]["labels"]["smrun.io/vm"] == "vm-1"

    stranger = copy.deepcopy(labelled)
    stranger["metadata"]["labels"]["smrun.io/vm"] = "vm-2"
    dyn = StubDynamic(race=stranger)
    with pytest.raises(errors.Conflict):
        cluster(dyn).create(labelled)
    assert dyn.posts == 2


class RecordingDynamic(StubDynamic):
    """Records every request's keyword arguments; POSTs with generateName get a fresh name."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.params: list[tuple[str, dict[str, Any]]] = []

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Response:
        self.params.append((method, params))
        if method == "post" and not body["metadata"].get("name"):
            body = copy.deepcopy(body)
            body["metadata"]["name"] = body["metadata"]["generateName"] + str(self.posts)
        return super().request(method, path, body, **params)


def test_a_lost_answer_to_a_generate_name_create_is_not_retried_into_a_duplicate() -> None:
    dyn = RecordingDynamic()
    gen = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"generateName": "cm-", "namespace": "ns"}}
    with pytest.raises(errors.TransientClusterError):
        cluster(dyn).create(gen)
    assert dyn.posts == 1 and len(dyn.objects) == 1  # one object, never a second copy


def test_every_request_has_a_timeout_so_a_dead_connection_cannot_block_forever() -> None:
    dyn = RecordingDynamic()
    kube = cluster(dyn)
    kube.create(manifest())  # the first answer is lost: post, post (409), get
    kube.fetch(ObjectRef("v1", "ConfigMap", "ns", "cm"))
    assert dyn.params and all(p.get("_request_timeout") for _, p in dyn.params), dyn.params


class RefusingDynamic(RecordingDynamic):
    """The first ``refusals`` POSTs never leave the client: their connection is refused."""

    def __init__(self, refusals: int, **kw: Any) -> None:
        super().__init__(lose_first_answer=False, **kw)
        self.refusals = refusals

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Response:
        if method == "post" and self.refusals:
            self.refusals -= 1
            self.params.append((method, params))
            refused = urllib3.exceptions.NewConnectionError(
                None,  # type: ignore[arg-type]
                "Failed to establish a new connection: [Errno 111] Connection refused")
            raise urllib3.exceptions.MaxRetryError(None, path, refused)  # type: ignore[arg-type]
        return super().request(method, path, body, **params)


def test_a_generate_name_create_whose_connection_was_refused_is_sent_again() -> None:
    # urllib3 no longer retries a refused connection underneath smrun (client._library_retries):
    # a create that was never sent is retried by smrun, generateName or not.
    dyn = RefusingDynamic(refusals=2)
    gen = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"generateName": "cm-", "namespace": "ns"}}
    created = cluster(dyn).create(gen)
    assert created["metadata"]["name"].startswith("cm-") and len(dyn.objects) == 1
    assert [m for m, _ in dyn.params].count("post") == 3
