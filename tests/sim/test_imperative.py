"""kubectl's imperative commands against the simulator: they send protobuf bodies.

``kubectl create configmap|secret|namespace|serviceaccount|role|rolebinding``, ``kubectl create
token``, ``kubectl auth can-i`` (also ``--list``) and ``kubectl auth whoami`` go through the typed
clientset, which sends ``application/vnd.kubernetes.protobuf`` (apiserver-fidelity.md §11.3). The
same reviews and TokenRequest through the ``kubernetes`` client and lightkube (JSON).
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from statemachine.sim.cluster import SimulatedClusters
from tests.conftest import run_kubectl

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
RBAC = "rbac.authorization.k8s.io/v1"
REF = {"apiGroup": "rbac.authorization.k8s.io"}

SEED = {"source": [
    {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "cm-reader", "namespace": "default"},
     "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
               {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                "resourceNames": ["one"]}]},
    {"apiVersion": RBAC, "kind": "RoleBinding",
     "metadata": {"name": "viewer-cm", "namespace": "default"},
     "subjects": [{"kind": "User", "name": "viewer"}],
     "roleRef": {**REF, "kind": "Role", "name": "cm-reader"}},
    {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "vm-watcher"},
     "rules": [{"apiGroups": ["kubevirt.io"], "resources": ["virtualmachines"],
                "verbs": ["get", "list", "watch"]},
               {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get"]},
               {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
    {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": "ops-vms"},
     "subjects": [{"kind": "Group", "name": "system:authenticated"}],
     "roleRef": {**REF, "kind": "ClusterRole", "name": "vm-watcher"}},
    {"apiVersion": RBAC, "kind": "RoleBinding",
     "metadata": {"name": "dangling", "namespace": "other"},
     "subjects": [{"kind": "User", "name": "viewer"}],
     "roleRef": {**REF, "kind": "Role", "name": "gone"}},
], "target": []}


@pytest.fixture
def rbac_sim(make_sim: Callable[..., SimulatedClusters]) -> SimulatedClusters:
    return make_sim(seed=SEED, controllers=False)


@pytest.fixture
def kc(rbac_sim: SimulatedClusters, tmp_path: Path) -> Kubectl:
    cache = tmp_path / "kubectl-cache"

    def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_kubectl(rbac_sim, cache, *args, **kw)
    return run


def test_kubectl_create_configmap_secret_namespace_serviceaccount(
        rbac_sim: SimulatedClusters, kc: Kubectl) -> None:
    store = rbac_sim.store("source")
    assert kc("create", "configmap", "cm", "--from-literal=a=b",
              "--from-literal=c=d").stdout == "configmap/cm created\n"
    assert store.get("ConfigMap", "default", "cm")["data"] == {"a": "b", "c": "d"}
    kc("create", "configmap", "bin", "--from-file=blob=/bin/true")
    blob = store.get("ConfigMap", "default", "bin")["binaryData"]["blob"]
    assert base64.b64decode(blob) == Path("/bin/true").read_bytes()
    assert kc("create", "secret", "generic", "s", "--from-literal=user=pw",
              "--type=Opaque").stdout == "secret/s created\n"
    secret = store.get("Secret", "default", "s")
    assert secret["data"] == {"user": base64.b64encode(b"pw").decode()}
    assert secret["type"] == "Opaque"
    kc("create", "secret", "docker-registry", "reg", "--docker-server=r.example",
       "--docker-username=u", "--docker-password=p")
    reg = store.get("Secret", "default", "reg")
    assert reg["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(reg["data"][".dockerconfigjson"]))["auths"]
    assert auths["r.example"]["username"] == "u"
    assert kc("create", "namespace", "team-a").stdout == "namespace/team-a created\n"
    assert store.get("Namespace", "", "team-a")["metadata"]["name"] == "team-a"
    assert kc("create", "serviceaccount", "robot", "-n", "team-a").stdout == \
        "serviceaccount/robot created\n"
    assert store.get("ServiceAccount", "team-a", "robot")["metadata"]["namespace"] == "team-a"
    # Labels and annotations survive the protobuf maps; --dry-run=server stores nothing.
    kc("create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server")
    assert store.try_get("ConfigMap", "default", "dry") is None
    out = kc("create", "rolebinding", "rb", "--role=cm-reader", "--user=someone",
             "--serviceaccount=team-a:robot", "-o", "json")
    rb = json.loads(out.stdout)
    assert rb["roleRef"] == {**REF, "kind": "Role", "name": "cm-reader"}
    assert {"kind": "ServiceAccount", "name": "robot", "namespace": "team-a"} in rb["subjects"]
    # A duplicate is refused as upstream, through the protobuf path too.
    dup = kc("create", "namespace", "team-a", check=False)
    assert 'namespaces "team-a" already exists' in dup.stderr


def test_kubectl_create_is_still_authorized(rbac_sim: SimulatedClusters, kc: Kubectl) -> None:
    denied = kc("create", "configmap", "x", context="source-viewer", check=False)
    assert denied.returncode != 0
    assert ('configmaps is forbidden: User "viewer" cannot create resource "configmaps" in API '
            'group "" in the namespace "default"') in denied.stderr


def test_kubectl_auth_can_i(kc: Kubectl) -> None:
    assert kc("auth", "can-i", "create", "pods").stdout == "yes\n"
    assert kc("auth", "can-i", "get", "configmaps", context="source-viewer").stdout == "yes\n"
    no = kc("auth", "can-i", "delete", "configmaps", context="source-viewer", check=False)
    assert (no.returncode, no.stdout) == (1, "no\n")
    assert kc("auth", "can-i", "get", "secret/one", context="source-viewer").stdout == "yes\n"
    assert kc("auth", "can-i", "get", "secret/two", context="source-viewer",
              check=False).stdout == "no\n"
    # Group subjects: every authenticated user may watch VMs, in any namespace.
    assert kc("auth", "can-i", "watch", "virtualmachines.kubevirt.io", "-n", "x",
              context="source-viewer").stdout == "yes\n"
    assert kc("auth", "can-i", "get", "/metrics", context="source-viewer").stdout == "yes\n"
    assert kc("auth", "can-i", "get", "/logs", context="source-viewer",
              check=False).stdout == "no\n"
    # A binding whose role is missing: RBAC says why it has no opinion, and kubectl prints it.
    dangling = kc("auth", "can-i", "delete", "pods", "-n", "other", context="source-viewer",
                  check=False)
    assert dangling.stdout == 'no - RBAC: role.rbac.authorization.k8s.io "gone" not found\n'
    denied = kc("get", "secrets", "-n", "other", context="source-viewer", check=False)
    assert ('secrets is forbidden: User "viewer" cannot list resource "secrets" in API group "" '
            'in the namespace "other": RBAC: role.rbac.authorization.k8s.io "gone" not found'
            ) in denied.stderr


def test_kubectl_auth_can_i_list(kc: Kubectl) -> None:
    out = kc("auth", "can-i", "--list", context="source-viewer").stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert ["configmaps", "[]", "[]", "[get", "list]"] in rows
    assert ["secrets", "[]", "[one]", "[get]"] in rows
    assert ["virtualmachines.kubevirt.io", "[]", "[]", "[get", "list", "watch]"] in rows
    assert ["selfsubjectaccessreviews.authorization.k8s.io", "[]", "[]", "[create]"] in rows
    assert ["[/metrics]", "[]", "[get]"] in rows
    assert ["[/version]", "[]", "[get]"] in rows
    # Another namespace: only the cluster-wide rules.
    other = kc("auth", "can-i", "--list", "-n", "kube-system", context="source-viewer").stdout
    assert "configmaps" not in other and "virtualmachines.kubevirt.io" in other
    admin = kc("auth", "can-i", "--list").stdout
    assert [line.split() for line in admin.splitlines()[1:]][0] == \
        ["*.*", "[]", "[]", "[*]"]


def test_kubectl_auth_whoami(kc: Kubectl) -> None:
    out = kc("auth", "whoami", "-o", "json").stdout
    info = json.loads(out)["status"]["userInfo"]
    assert info == {"username": "admin", "groups": ["system:masters", "system:authenticated"]}
    viewer = kc("auth", "whoami", context="source-viewer").stdout.splitlines()
    assert viewer[1].split() == ["Username", "viewer"]
    assert viewer[2].split() == ["Groups", "[system:authenticated]"]


def test_kubectl_create_token_gives_a_working_service_account_token(
        rbac_sim: SimulatedClusters, kc: Kubectl) -> None:
    kc("create", "serviceaccount", "robot")
    sa_uid = rbac_sim.store("source").get("ServiceAccount", "default", "robot")["metadata"]["uid"]
    out = json.loads(kc("create", "token", "robot", "--duration=2h", "-o", "json").stdout)
    assert out["kind"] == "TokenRequest"
    assert out["spec"]["expirationSeconds"] == 7200
    assert out["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    expires = dt.datetime.strptime(out["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    left = expires.replace(tzinfo=dt.timezone.utc) - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(hours=1, minutes=58) < left <= dt.timedelta(hours=2)
    token = out["status"]["token"]
    who = json.loads(kc("--token", token, "auth", "whoami", "-o", "json").stdout)
    info = who["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:default:robot"
    assert info["uid"] == sa_uid
    assert info["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default",
                              "system:authenticated"]
    # RBAC applies to the service account: denied, then granted by a ServiceAccount subject.
    denied = kc("--token", token, "get", "configmaps", check=False)
    assert ('User "system:serviceaccount:default:robot" cannot list resource "configmaps"'
            in denied.stderr)
    kc("create", "rolebinding", "robot-cm", "--role=cm-reader", "--serviceaccount=default:robot")
    assert kc("--token", token, "auth", "can-i", "list", "configmaps").stdout == "yes\n"
    kc("--token", token, "get", "configmaps")
    # The default duration is an hour; under ten minutes is refused as upstream.
    plain = json.loads(kc("create", "token", "robot", "-o", "json").stdout)
    assert plain["spec"]["expirationSeconds"] == 3600
    short = kc("create", "token", "robot", "--duration=1m", check=False)
    assert ('TokenRequest.authentication.k8s.io "robot" is invalid: spec.expirationSeconds: '
            'Invalid value: 60: may not specify a duration less than 10 minutes') in short.stderr
    missing = kc("create", "token", "nobody", check=False)
    assert 'serviceaccounts "nobody" not found' in missing.stderr
    # Deleting the account revokes its tokens.
    kc("delete", "serviceaccount", "robot")
    gone = kc("--token", token, "get", "configmaps", check=False)
    assert "Unauthorized" in gone.stderr or "provide credentials" in gone.stderr


def test_rules_review_through_the_kubernetes_client(rbac_sim: SimulatedClusters) -> None:
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=str(rbac_sim.kubeconfig_path),
                                        context="source-viewer")
    authz = client.AuthorizationV1Api(api)
    review = authz.create_self_subject_rules_review(client.V1SelfSubjectRulesReview(
        spec=client.V1SelfSubjectRulesReviewSpec(namespace="other")))
    # The binding in "other" names a Role that does not exist: upstream reports it and goes on.
    assert review.status.evaluation_error == 'role.rbac.authorization.k8s.io "gone" not found'
    assert review.status.incomplete is False
    resources = [(r.api_groups, r.resources, r.verbs) for r in review.status.resource_rules]
    assert (["kubevirt.io"], ["virtualmachines"], ["get", "list", "watch"]) in resources
    assert all("configmaps" not in r for _, r, _ in resources)
    urls = [u.non_resource_urls for u in review.status.non_resource_rules]
    assert ["/metrics"] in urls
    with pytest.raises(client.ApiException) as err:
        authz.create_self_subject_rules_review(client.V1SelfSubjectRulesReview(
            spec=client.V1SelfSubjectRulesReviewSpec()))
    assert err.value.status == 400
    assert json.loads(err.value.body)["message"] == "no namespace on request"
    access = authz.create_self_subject_access_review(client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
            verb="list", resource="configmaps", namespace="default"))))
    assert access.status.allowed is True
    assert access.status.reason == ('RBAC: allowed by RoleBinding "viewer-cm/default" of Role '
                                    '"cm-reader" to User "viewer"')
    vms = authz.create_self_subject_access_review(client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=client.V1ResourceAttributes(
            verb="watch", resource="virtualmachines", group="kubevirt.io"))))
    assert vms.status.reason == ('RBAC: allowed by ClusterRoleBinding "ops-vms" of ClusterRole '
                                 '"vm-watcher" to Group "system:authenticated"')


def test_token_request_through_the_kubernetes_client(rbac_sim: SimulatedClusters) -> None:
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=str(rbac_sim.kubeconfig_path),
                                        context="source")
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account("default", client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="bot")))
    tr = core.create_namespaced_service_account_token("bot", "default", client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=["smrun"], expiration_seconds=900)))
    assert tr.spec.audiences == ["smrun"] and tr.spec.expiration_seconds == 900
    assert tr.status.expiration_timestamp is not None
    token_entry = next(r for r in core.get_api_resources().resources
                       if r.name == "serviceaccounts/token")
    assert (token_entry.kind, token_entry.group, token_entry.verbs) == (
        "TokenRequest", "authentication.k8s.io", ["create"])
    cfg = client.Configuration()
    cfg.host = rbac_sim.url("source")
    cfg.ssl_ca_cert = str(rbac_sim.ca_path)
    cfg.api_key = {"authorization": tr.status.token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    with client.ApiClient(cfg) as bot:
        review = client.AuthenticationV1Api(bot).create_self_subject_review(
            client.V1SelfSubjectReview())
        assert review.status.user_info.username == "system:serviceaccount:default:bot"


def test_reviews_and_token_through_lightkube(rbac_sim: SimulatedClusters) -> None:
    from lightkube import Client, KubeConfig
    from lightkube.models.authentication_v1 import TokenRequestSpec
    from lightkube.models.authorization_v1 import (ResourceAttributes,
                                                   SelfSubjectAccessReviewSpec,
                                                   SelfSubjectRulesReviewSpec)
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.models.authentication_v1 import TokenRequest
    from lightkube.resources.authentication_v1 import SelfSubjectReview
    from lightkube.resources.authorization_v1 import (SelfSubjectAccessReview,
                                                      SelfSubjectRulesReview)
    from lightkube.resources.core_v1 import ServiceAccount

    config = KubeConfig.from_file(str(rbac_sim.kubeconfig_path))
    viewer = Client(config=config.get(context_name="source-viewer"), field_manager="t")
    rules = viewer.create(SelfSubjectRulesReview(spec=SelfSubjectRulesReviewSpec(
        namespace="default")))
    assert rules.status is not None
    assert any(r.resources == ["configmaps"] and r.verbs == ["get", "list"]
               for r in rules.status.resourceRules)
    can = viewer.create(SelfSubjectAccessReview(spec=SelfSubjectAccessReviewSpec(
        resourceAttributes=ResourceAttributes(verb="delete", resource="configmaps",
                                              namespace="default"))))
    assert can.status is not None and can.status.allowed is False
    who = viewer.create(SelfSubjectReview())
    assert who.status is not None and who.status.userInfo is not None
    assert who.status.userInfo.username == "viewer"

    admin = Client(config=config.get(context_name="source"), field_manager="t")
    admin.create(ServiceAccount(metadata=ObjectMeta(name="lk", namespace="default")))
    tr = admin.create(ServiceAccount.Token(metadata=ObjectMeta(name="lk", namespace="default"),
                                           spec=TokenRequestSpec(audiences=[])), name="lk")
    assert isinstance(tr, TokenRequest)
    assert tr.status is not None and tr.status.token.count(".") == 2


def test_kubectl_as_impersonates_users_groups_and_service_accounts(
        rbac_sim: SimulatedClusters, kc: Kubectl) -> None:
    # admin (system:masters) may impersonate anyone; the request then acts as them.
    who = json.loads(kc("auth", "whoami", "--as=viewer", "-o", "json").stdout)
    assert who["status"]["userInfo"] == {"username": "viewer",
                                         "groups": ["system:authenticated"]}
    who = json.loads(kc("auth", "whoami", "--as=alice", "--as-group=devs", "--as-uid=u-1",
                        "-o", "json").stdout)["status"]["userInfo"]
    assert (who["username"], who["uid"], who["groups"]) == (
        "alice", "u-1", ["devs", "system:authenticated"])
    kc("get", "configmaps", "--as=viewer")
    denied = kc("create", "configmap", "x", "--as=viewer", check=False)
    assert 'User "viewer" cannot create resource "configmaps"' in denied.stderr
    assert kc("auth", "can-i", "get", "configmaps", "--as=viewer").stdout == "yes\n"
    kc("create", "serviceaccount", "robot")
    kc("create", "rolebinding", "robot-cm", "--role=cm-reader", "--serviceaccount=default:robot")
    rows = kc("auth", "can-i", "--list", "--as=system:serviceaccount:default:robot").stdout
    assert ["configmaps", "[]", "[]", "[get", "list]"] in [r.split() for r in rows.splitlines()]
    sa = json.loads(kc("auth", "whoami", "--as=system:serviceaccount:default:robot", "-o",
                       "json").stdout)["status"]["userInfo"]
    assert sa["groups"] == ["system:serviceaccounts", "system:serviceaccounts:default",
                            "system:authenticated"]
    # Others need the impersonate verb, per kind of thing impersonated.
    refused = kc("get", "configmaps", "--as=admin", context="source-viewer", check=False)
    assert ('Error from server (Forbidden): users "admin" is forbidden: User "viewer" cannot '
            'impersonate resource "users" in API group "" at the cluster scope'
            ) in refused.stderr
    kc("create", "clusterrole", "impersonate-devs", "--verb=impersonate", "--resource=groups",
       "--resource-name=devs")
    kc("create", "clusterrole", "impersonate-alice", "--verb=impersonate", "--resource=users",
       "--resource-name=alice")
    kc("create", "clusterrolebinding", "viewer-imp", "--clusterrole=impersonate-alice",
       "--user=viewer")
    kc("create", "clusterrolebinding", "viewer-imp-devs", "--clusterrole=impersonate-devs",
       "--user=viewer")
    alice = json.loads(kc("auth", "whoami", "--as=alice", "--as-group=devs", "-o", "json",
                          context="source-viewer").stdout)["status"]["userInfo"]
    assert (alice["username"], alice["groups"]) == ("alice", ["devs", "system:authenticated"])
    ops = kc("get", "configmaps", "--as=alice", "--as-group=ops", context="source-viewer",
             check=False)
    assert ('groups "ops" is forbidden: User "viewer" cannot impersonate resource "groups" in '
            'API group "" at the cluster scope') in ops.stderr


def test_group_bindings_apply_to_subresources(rbac_sim: SimulatedClusters, kc: Kubectl) -> None:
    # pods/log is granted to the group system:authenticated (ClusterRoleBinding ops-vms).
    rbac_sim.store("source").create("Pod", {"metadata": {"name": "p", "namespace": "default"},
                                            "spec": {"containers": [{"name": "c",
                                                                     "image": "busybox"}]}})
    logs = kc("logs", "p", context="source-viewer", check=False)
    assert "forbidden" not in logs.stderr
    assert 'container "c" in pod "p" is waiting to start' in logs.stderr

