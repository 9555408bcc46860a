"""Backoff with full jitter, Retry-After, bounded attempts and time, and the WARNING log lines."""
from __future__ import annotations

import logging

import pytest

from statemachine import errors
from statemachine.k8s.retry import RetryPolicy, call


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(errs: list[BaseException], result: str = "ok"):  # type: ignore[no-untyped-def]
    calls = []

    def fn() -> str:
        calls.append(1)
        if errs:
            raise errs.pop(0)
        return result
    return fn, calls


def test_transient_errors_are_retried_until_success_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    fn, calls = failing([errors.TransientClusterError("busy", status=500),
                         errors.ClusterUnreachable("reset")])
    with caplog.at_level(logging.WARNING, logger="statemachine.k8s"):
        assert call(fn, policy=RetryPolicy(), verb="create", what="ConfigMap ns/a",
                    sleep=t.sleep, clock=t.clock, rand=lambda: 1.0) == "ok"
    assert len(calls) == 3
    assert t.sleeps == [0.05, 0.1]  # full window with rand=1.0, doubling
    lines = [r.getMessage() for r in caplog.records if r.name == "statemachine.k8s"]
    assert len(lines) == 2
    assert "create ConfigMap ns/a" in lines[0] and "status 500" in lines[0]
    assert "attempt 1/" in lines[0] and "attempt 2/" in lines[1]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_full_jitter_is_uniform_below_the_capped_window() -> None:
    policy = RetryPolicy(base=1.0, cap=4.0)
    assert policy.backoff(1, lambda: 0.5) == 0.5
    assert policy.backoff(3, lambda: 1.0) == 4.0
    assert policy.backoff(10, lambda: 1.0) == 4.0   # capped
    assert policy.backoff(10, lambda: 0.0) == 0.0


def test_retry_after_is_a_lower_bound_on_the_wait() -> None:
    t = FakeTime()
    fn, _ = failing([errors.TransientClusterError("slow", status=429, retry_after=1.5)])
    call(fn, policy=RetryPolicy(), verb="get", what="x", sleep=t.sleep, clock=t.clock,
         rand=lambda: 0.2)
    assert t.sleeps == [1.5]


def test_permanent_errors_are_not_retried() -> None:
    t = FakeTime()
    fn, calls = failing([errors.Conflict("exists", status=409)])
    with pytest.raises(errors.Conflict):
        call(fn, policy=RetryPolicy(), verb="create", what="x", sleep=t.sleep, clock=t.clock)
    assert len(calls) == 1 and t.sleeps == []


def test_attempts_are_bounded_and_the_last_error_raised() -> None:
    t = FakeTime()
    errs: list[BaseException] = [errors.TransientClusterError(f"busy {i}", status=503)
                                 for i in range(10)]
    fn, calls = failing(errs)
    with pytest.raises(errors.TransientClusterError, match="busy 2"):
        call(fn, policy=RetryPolicy(attempts=3), verb="get", what="x", sleep=t.sleep,
             clock=t.clock, rand=lambda: 1.0)
    assert len(calls) == 3


def test_total_time_is_bounded() -> None:
    t = FakeTime()
    errs: list[BaseException] = [errors.TransientClusterError("busy", status=429, retry_after=4)
                                 for _ in range(10)]
    fn, calls = failing(errs)
    with pytest.raises(errors.TransientClusterError):
        call(fn, policy=RetryPolicy(attempts=10, total=10.0), verb="get", what="x",
             sleep=t.sleep, clock=t.clock)
    assert t.sleeps == [4, 4] and len(calls) == 3
    assert t.now <= 10.0


def test_other_exceptions_pass_through() -> None:
    fn, calls = failing([KeyError("bug")])
    with pytest.raises(KeyError):
        call(fn, policy=RetryPolicy(), verb="get", what="x", sleep=lambda s: None)
    assert len(calls) == 1


def test_invalid_policy_is_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_a_note_stands_once_for_the_retries_of_the_errors_it_covers(
        caplog: pytest.LogCaptureFixture) -> None:
    """How connecting to a cluster that cannot be reached is logged: one WARNING, the note,
    then each retry at DEBUG with its error; an error the note does not cover (a cluster that
    answers 500) is logged as any retry is."""
    t = FakeTime()
    fn, calls = failing([errors.ClusterUnreachable("refused"), errors.ClusterUnreachable("again"),
                         errors.TransientClusterError("busy", status=500),
                         errors.ClusterUnreachable("refused")])

    def note(exc: errors.ClusterError) -> str | None:
        return "cluster x cannot be reached" if isinstance(exc, errors.ClusterUnreachable) \
            else None

    with caplog.at_level(logging.DEBUG, logger="statemachine.k8s"):
        assert call(fn, policy=RetryPolicy(), verb="discover", what="cluster x", note=note,
                    sleep=t.sleep, clock=t.clock, rand=lambda: 1.0) == "ok"
    assert len(calls) == 5
    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [m for level, m in logged if level == logging.WARNING] == [
        "cluster x cannot be reached",
        "retrying discover cluster x after TransientClusterError (status 500, attempt 3/8, "
        "waiting 0.20s)"]
    debug = [m for level, m in logged if level == logging.DEBUG]
    assert len(debug) == 3 and debug[0].endswith("(status none, attempt 1/8, waiting 0.05s): "
                                                 "refused")


def test_retry_if_narrows_which_transient_errors_are_retried() -> None:
    t = FakeTime()
    fn, calls = failing([errors.ClusterUnreachable("refused"), errors.ClusterUnreachable("lost")])
    with pytest.raises(errors.ClusterUnreachable, match="lost"):
        call(fn, policy=RetryPolicy(), verb="create", what="x", sleep=t.sleep, clock=t.clock,
             retry_if=lambda exc: str(exc) == "refused")
    assert len(calls) == 2
