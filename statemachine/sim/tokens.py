"""Service account tokens of a simulated cluster (TokenRequest, ``kubectl create token``).

:class:`TokenIssuer` makes JWT-shaped bearer tokens with the claims upstream puts in a
service account token (``iss``, ``sub``, ``aud``, ``exp``, ``iat``, ``nbf``, ``jti`` and
``kubernetes.io: {namespace, serviceaccount: {name, uid}}``) and checks them on later requests:
the signature, the expiry, and that the service account still exists with the same uid (a token
of a deleted and re-created account is refused, as upstream's legacy-claims validator does).
Unlike upstream, tokens are signed with HMAC-SHA256 under a per-server random key (``alg:
HS256``), not with RS256: nothing outside the server verifies them, and the stdlib has no RSA.

It does not authorize anything (``auth.py``) nor bind tokens to pods or secrets.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

#: Upstream's default issuer and audience on kubeadm clusters.
ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_SECONDS = 3600
MIN_SECONDS = 600
MAX_SECONDS = 1 << 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Claims:
    """What a valid token says about its bearer."""

    namespace: str
    name: str
    uid: str
    jti: str
    expires: int


class TokenIssuer:
    """Issues and verifies one cluster's service account tokens."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._kid = _b64(hashlib.sha256(self._key).digest()[:16])

    def _sign(self, signing_input: bytes) -> str:
        return _b64(hmac.new(self._key, signing_input, hashlib.sha256).digest())

    def issue(self, namespace: str, name: str, uid: str, audiences: list[str],
              seconds: int) -> tuple[str, int]:
        """A token for the service account and its expiry (Unix seconds)."""
        now = int(time.time())
        exp = now + seconds
        claims: dict[str, Any] = {
            "aud": audiences, "exp": exp, "iat": now, "iss": ISSUER, "jti": str(uuid.uuid4()),
            "kubernetes.io": {"namespace": namespace,
                              "serviceaccount": {"name": name, "uid": uid}},
            "nbf": now, "sub": f"system:serviceaccount:{namespace}:{name}"}
        header = {"alg": "HS256", "kid": self._kid}
        signing_input = (_b64(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         _b64(json.dumps(claims, separators=(",", ":")).encode())).encode()
        return signing_input.decode() + "." + self._sign(signing_input), exp

    def verify(self, token: str) -> Claims | None:
        """The claims of a token this issuer made and that has not expired, else ``None``."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        if not hmac.compare_digest(self._sign(signing_input), parts[2]):
            return None
        try:
            claims = json.loads(_unb64(parts[1]))
            k8s = claims["kubernetes.io"]
            sa = k8s["serviceaccount"]
            result = Claims(str(k8s["namespace"]), str(sa["name"]), str(sa["uid"]),
                            str(claims.get("jti", "")), int(claims["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return result if result.expires > time.time() else None
