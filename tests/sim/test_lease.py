"""coordination.k8s.io/v1 Lease, served as a built-in kind (leader election; `smrun operator`
holds one per Plan): discovery, kubectl's Holder column, and an update that carries a stale
resourceVersion refused with 409 Conflict (how a second holder loses a race)."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml


def test_lease_served_and_printed(kubectl: Callable[..., Any]) -> None:
    resources = kubectl("api-resources", "--api-group=coordination.k8s.io").stdout
    assert "leases" in resources and "Lease" in resources
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "plan-a", "namespace": "default"},
             "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15,
                      "renewTime": "2026-12-04T18:00:00.000000Z"}}
    kubectl("create", "-f", "-", input=yaml.safe_dump(lease))
    out = kubectl("get", "leases", "-n", "default").stdout.splitlines()
    assert out[0].split() == ["NAME", "HOLDER", "AGE"]
    assert out[1].split()[:2] == ["plan-a", "replica-a"]


def test_lease_stale_update_conflicts(sim: Any, dynamic_client: Callable[..., Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    api = dynamic_client(sim).resources.get(api_version="coordination.k8s.io/v1", kind="Lease")
    created = api.create(namespace="default", body={
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "plan-b"}, "spec": {"holderIdentity": "replica-a"}})
    stale = created.metadata.resourceVersion
    api.patch(namespace="default", name="plan-b", content_type="application/merge-patch+json",
              body={"spec": {"holderIdentity": "replica-b"}})
    with pytest.raises(ApiException) as refused:
        api.patch(namespace="default", name="plan-b",
                  content_type="application/merge-patch+json",
                  body={"metadata": {"resourceVersion": stale},
                        "spec": {"holderIdentity": "replica-c"}})
    assert refused.value.status == 409
    assert json.loads(refused.value.body)["reason"] == "Conflict"
