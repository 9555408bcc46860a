"""Every HTTP status and transport failure maps to the intended smrun error class, in one place."""
from __future__ import annotations

import json

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import api_exception

from statemachine import errors
from statemachine.k8s.errormap import MAX_MESSAGE, from_status, parse_retry_after, translate


def _api_exception(status: int, message: str = "boom", reason: str = "Whatever",
                   headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="HTTP reason")
    exc.body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": message, "reason": reason, "code": status})
    exc.headers = headers or {"Content-Type": "application/json", "Audit-Id": "secret-ish"}
    return exc


EXPECTED = [
    (400, errors.PermanentClusterError),
    (401, errors.Forbidden),
    (403, errors.Forbidden),
    (404, errors.NotFound),
    (405, errors.PermanentClusterError),
    (409, errors.Conflict),
    (410, errors.Gone),
    (415, errors.PermanentClusterError),
    (422, errors.Invalid),
    (429, errors.TransientClusterError),
    (500, errors.TransientClusterError),
    (502, errors.TransientClusterError),
    (503, errors.TransientClusterError),
    (504, errors.TransientClusterError),
]


@pytest.mark.parametrize(("status", "cls"), EXPECTED, ids=[str(s) for s, _ in EXPECTED])
def test_each_status_maps_to_its_class(status: int, cls: type[errors.ClusterError]) -> None:
    for raised in (_api_exception(status), api_exception(_api_exception(status))):
        mapped = translate(raised)
        assert type(mapped) is cls
        assert mapped.status == status
        assert mapped.transient == (status == 429 or status >= 500)


def test_dynamic_client_errors_map_like_plain_api_exceptions() -> None:
    dynamic = api_exception(_api_exception(404, 'virtualmachines.kubevirt.io "x" not found',
                                           "NotFound"))
    assert type(dynamic).__name__ == "NotFoundError"
    mapped = translate(dynamic)
    assert isinstance(mapped, errors.NotFound)
    assert str(mapped) == 'virtualmachines.kubevirt.io "x" not found'
    assert mapped.reason == "NotFound"


def test_message_is_the_status_message_only_and_truncated() -> None:
    mapped = translate(_api_exception(422, "x" * 5000))
    assert mapped is not None
    text = str(mapped)
    assert len(text) <= MAX_MESSAGE
    assert "Audit-Id" not in text and "HTTP response" not in text and "{" not in text


def test_retry_after_header_is_honoured_on_429() -> None:
    mapped = translate(_api_exception(429, "slow down", "TooManyRequests",
                                      headers={"retry-after": "2"}))
    assert isinstance(mapped, errors.TransientClusterError)
    assert mapped.retry_after == 2.0


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("100000") == 60.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=5.0) == 5.0


def test_watch_error_event_410_maps_to_gone() -> None:
    # How the client raises an ERROR event: no body, "Reason: message" in .reason.
    raised = ApiException(status=410, reason="Expired: too old resource version: 1 (1000)")
    mapped = translate(raised)
    assert isinstance(mapped, errors.Gone)
    assert mapped.reason == "Expired"
    assert str(mapped) == "too old resource version: 1 (1000)"
    status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    assert isinstance(from_status(status), errors.Gone)


@pytest.mark.parametrize("raised", [
    ConnectionRefusedError(111, "Connection refused"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("timed out"),
    urllib3.exceptions.MaxRetryError(None, "/api",  # type: ignore[arg-type]
                                     urllib3.exceptions.NewConnectionError(
                                         None, "Failed to establish a new connection")),  # type: ignore[arg-type]
    urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out."),  # type: ignore[arg-type]
], ids=["refused", "reset", "timeout", "max-retry", "protocol", "read-timeout"])
def test_transport_failures_are_unreachable_and_transient(raised: BaseException) -> None:
    mapped = translate(raised, cluster="east")
    assert isinstance(mapped, errors.ClusterUnreachable)
    assert mapped.transient
    assert "east" in str(mapped)


def test_unrelated_exceptions_are_not_translated() -> None:
    assert translate(ValueError("bug")) is None
    already = errors.Conflict("exists")
    assert translate(already) is already


def test_cluster_error_is_not_an_api_exception() -> None:
    assert not issubclass(errors.ClusterError, ApiException)
    for _, cls in EXPECTED:
        assert not issubclass(cls, ApiException)
