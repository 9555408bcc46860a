"""The answers to the requests that ask the server about its caller, and TokenRequest.

- SelfSubjectAccessReview (``kubectl auth can-i VERB RESOURCE`` / ``can-i get /healthz``): the
  spec echoed back with ``status.allowed`` and upstream's ``reason`` (``auth.decide``).
- SelfSubjectRulesReview (``kubectl auth can-i --list``): ``auth.rules_for``; upstream answers a
  fresh object carrying only the status, and 400 ``no namespace on request`` without a namespace.
- SelfSubjectReview (``kubectl auth whoami``): the caller's ``UserInfo``.
- TokenRequest (``POST .../serviceaccounts/NAME/token``, ``kubectl create token``): a token from
  ``tokens.TokenIssuer`` for an existing service account, with ``expirationTimestamp``; the
  default lifetime is an hour, under ten minutes is 422 as upstream.

Reviews are never stored. Authorization of the TokenRequest itself (``create`` on
``serviceaccounts/token``) is the caller's job; the self reviews are open to every authenticated
user. Nothing here reads the wire.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any

from statemachine.errors import Invalid
from statemachine.sim import auth, tokens
from statemachine.sim.decode import bad_request
from statemachine.sim.store import Store

_AUTHZ = "authorization.k8s.io/v1"
_AUTHN = "authentication.k8s.io/v1"


def _spec(body: dict[str, Any]) -> dict[str, Any]:
    spec = body.get("spec")
    return spec if isinstance(spec, dict) else {}


def access_review(store: Store, who: auth.Identity, body: dict[str, Any]) -> dict[str, Any]:
    spec = _spec(body)
    res, url = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if isinstance(res, dict) and res:
        a = auth.Attributes(who.name, str(res.get("verb", "")), str(res.get("group", "")),
                            str(res.get("resource", "")), str(res.get("namespace", "")),
                            str(res.get("name", "")), str(res.get("subresource", "")), who.groups)
        ok, reason = auth.decide(store, a)
    elif isinstance(url, dict) and url:
        ok, reason = auth.url_decide(store, who.name, who.groups, str(url.get("verb", "")),
                                     str(url.get("path", "")))
    else:
        raise Invalid('SelfSubjectAccessReview.authorization.k8s.io "" is invalid: '
                      "spec.resourceAttributes: Invalid value: \"null\": exactly one of "
                      "nonResourceAttributes or resourceAttributes must be specified",
                      status=422, reason="Invalid")
    status: dict[str, Any] = {"allowed": ok}
    if reason:
        status["reason"] = reason
    return {"kind": "SelfSubjectAccessReview", "apiVersion": _AUTHZ,
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


def rules_review(store: Store, who: auth.Identity, body: dict[str, Any]) -> dict[str, Any]:
    namespace = _spec(body).get("namespace")
    if not namespace or not isinstance(namespace, str):
        raise bad_request("no namespace on request")
    return {"kind": "SelfSubjectRulesReview", "apiVersion": _AUTHZ,
            "metadata": {"creationTimestamp": None}, "spec": {},
            "status": auth.rules_for(store, who, namespace)}


def self_review(who: auth.Identity) -> dict[str, Any]:
    return {"kind": "SelfSubjectReview", "apiVersion": _AUTHN,
            "metadata": {"creationTimestamp": None}, "status": {"userInfo": who.user_info()}}


def token_request(store: Store, issuer: tokens.TokenIssuer, namespace: str, name: str,
                  body: dict[str, Any]) -> dict[str, Any]:
    """The answer to a TokenRequest for service account ``namespace/name``."""
    sa = store.get("ServiceAccount", namespace, name)  # 404 serviceaccounts "name" not found
    spec = dict(_spec(body))
    seconds = spec.get("expirationSeconds")
    if seconds is None:
        seconds = tokens.DEFAULT_SECONDS
    problem = ""
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        problem = f"spec.expirationSeconds: Invalid value: {seconds!r}: must be an integer"
    elif seconds < tokens.MIN_SECONDS:
        problem = (f"spec.expirationSeconds: Invalid value: {seconds}: may not specify a "
                   "duration less than 10 minutes")
    elif seconds > tokens.MAX_SECONDS:
        problem = (f"spec.expirationSeconds: Invalid value: {seconds}: may not specify a "
                   "duration larger than 2^32 seconds")
    if problem:
        raise Invalid(f'TokenRequest.authentication.k8s.io "{name}" is invalid: {problem}',
                      status=422, reason="Invalid")
    audiences = [a for a in spec.get("audiences") or [] if isinstance(a, str)] or [tokens.ISSUER]
    token, exp = issuer.issue(namespace, name, sa["metadata"]["uid"], audiences, int(seconds))
    spec.update(audiences=audiences, expirationSeconds=seconds)
    spec.setdefault("boundObjectRef", None)
    expires = _dt.datetime.fromtimestamp(exp, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "TokenRequest", "apiVersion": _AUTHN,
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": spec, "status": {"token": token, "expirationTimestamp": expires}}
