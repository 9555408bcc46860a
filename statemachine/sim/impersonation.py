"""User impersonation (``kubectl --as``, ``--as-group``, ``--as-uid``), as kube-apiserver does it.

The ``Impersonate-User``, ``Impersonate-Group``, ``Impersonate-Uid`` and ``Impersonate-Extra-*``
headers replace the caller's identity for the rest of the request, once RBAC allows the caller
the ``impersonate`` verb on each of them: ``users``, ``groups`` or ``serviceaccounts`` (core
group; a ``system:serviceaccount:NS:NAME`` user is checked as that service account, in its
namespace), ``userextras/<key>`` and ``uids`` (``authentication.k8s.io``). The impersonated user
gets ``system:authenticated`` unless the groups asked for name it or ``system:unauthenticated``;
a service account without requested groups gets its fixed groups. A refusal is upstream's 403
(``users "x" is forbidden: User "u" cannot impersonate resource "users" in API group "" at the
cluster scope``); groups, extras or a uid without a user are upstream's plain-text 500.

It does not authenticate the caller (``apiserver.py``) nor evaluate RBAC (``auth.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from statemachine.sim import auth
from statemachine.sim.store import Store

USER, GROUP, UID = "Impersonate-User", "Impersonate-Group", "Impersonate-Uid"
EXTRA_PREFIX = "impersonate-extra-"
_AUTHN = "authentication.k8s.io"


class WithoutUser(Exception):
    """Groups, extras or a uid were asked for without a user (upstream: plain-text 500)."""


@dataclass(frozen=True)
class _Request:
    """One thing to impersonate, as upstream's ObjectReference (its ``%v`` in messages)."""

    kind: str
    name: str
    namespace: str = ""
    api_version: str = ""
    field_path: str = ""

    def __str__(self) -> str:  # Go's %v of a v1.ObjectReference
        return "{" + " ".join([self.kind, self.namespace, self.name, "", self.api_version, "",
                               self.field_path]) + "}"


def _split_service_account(username: str) -> tuple[str, str] | None:
    parts = username.split(":")
    if len(parts) == 4 and username.startswith(auth.SA_PREFIX) and parts[2] and parts[3]:
        return parts[2], parts[3]
    return None


def _requests(headers: Message) -> list[_Request]:
    # One cheap pass first: almost no request impersonates (Message.get scans every header).
    if not any(name[:12].lower() == "impersonate-" for name in headers.keys()):
        return []
    out: list[_Request] = []
    user = headers.get(USER) or ""
    if user:
        sa = _split_service_account(user)
        out.append(_Request("ServiceAccount", sa[1], sa[0]) if sa else _Request("User", user))
    out += [_Request("Group", g) for g in headers.get_all(GROUP) or [] if g]
    for header, value in headers.items():
        if header.lower().startswith(EXTRA_PREFIX):
            out.append(_Request("UserExtra", value, api_version=f"{_AUTHN}/v1",
                                field_path=header[len(EXTRA_PREFIX):].lower()))
    uid = headers.get(UID) or ""
    if uid:
        out.append(_Request("UID", uid, api_version=f"{_AUTHN}/v1"))
    if out and not user:
        raise WithoutUser(f"requested [{' '.join(str(r) for r in out)}] without impersonating a "
                          "user")
    return out


_RESOURCE = {"ServiceAccount": ("", "serviceaccounts"), "User": ("", "users"),
             "Group": ("", "groups"), "UserExtra": (_AUTHN, "userextras"),
             "UID": (_AUTHN, "uids")}


def apply(store: Store, caller: auth.Identity, headers: Message) -> auth.Identity:
    """The identity the request acts as: ``caller`` itself, or whom it may impersonate."""
    requests = _requests(headers)
    if not requests:
        return caller
    groups_given = bool(headers.get_all(GROUP))
    name, uid = "", ""
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for r in requests:
        group, resource = _RESOURCE[r.kind]
        a = auth.Attributes(caller.name, "impersonate", group, resource, r.namespace, r.name,
                            r.field_path, caller.groups)
        ok, reason = auth.decide(store, a)
        if not ok:
            qualified = f"{resource}.{group}" if group else resource
            raise auth.forbidden_resource(qualified, a, reason)
        if r.kind == "ServiceAccount":
            name = f"{auth.SA_PREFIX}{r.namespace}:{r.name}"
            if not groups_given:
                groups = ["system:serviceaccounts", f"system:serviceaccounts:{r.namespace}"]
        elif r.kind == "User":
            name = r.name
        elif r.kind == "Group":
            groups.append(r.name)
        elif r.kind == "UserExtra":
            extra.setdefault(r.field_path, []).append(r.name)
        else:
            uid = r.name
    if name != "system:anonymous":
        if auth.AUTHENTICATED not in groups and "system:unauthenticated" not in groups:
            groups.append(auth.AUTHENTICATED)
    elif "system:unauthenticated" not in groups:
        groups.append("system:unauthenticated")
    return auth.Identity(name, tuple(groups), uid, tuple((k, tuple(v)) for k, v in extra.items()))
