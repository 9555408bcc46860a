"""What a refused API call answered: the ``Status`` body, checked to agree with the HTTP code.

Shared by the simulator's tests that assert how a request is refused (validation, admission,
dry run), through the official ``kubernetes`` client.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException


def status_of(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    assert body["kind"] == "Status" and body["code"] == exc.status
    return body


def refused(call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call``, which must be refused, and return the Status it answered."""
    with pytest.raises(ApiException) as info:
        call()
    return status_of(info.value)
