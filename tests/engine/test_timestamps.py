"""``journal.utc_now()``: the stamp on every journal entry and progress event.

It formats the part up to the second once per second (issue 8), so these check the contract a
cache could break: the exact shape, that it parses, that it is the current UTC time, that it
never goes backwards, and that a new second is noticed.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from statemachine.engine import journal
from statemachine.engine.journal import utc_now

SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_shape_parses_and_is_now_in_utc() -> None:
    before = datetime.now(timezone.utc)
    stamp = utc_now()
    after = datetime.now(timezone.utc)
    assert SHAPE.fullmatch(stamp), stamp
    when = parse(stamp)
    assert when.tzinfo is not None and when.utcoffset() == timedelta(0)
    assert abs(when - before) < timedelta(seconds=1)
    # milliseconds are truncated, never rounded up past the moment of the call
    assert before - timedelta(milliseconds=1) <= when <= after


def test_non_decreasing_over_many_calls() -> None:
    stamps = [utc_now() for _ in range(2000)]
    assert all(SHAPE.fullmatch(s) for s in stamps)
    parsed = [parse(s) for s in stamps]
    assert parsed == sorted(parsed)
    assert stamps == sorted(stamps)  # and as text, which is how logs and journals get sorted


@pytest.mark.parametrize("start", [1_795_000_000.0, 1_795_000_059.9995, 1_798_761_599.999])
def test_a_new_second_is_noticed(monkeypatch: pytest.MonkeyPatch, start: float) -> None:
    """The cached second is replaced when the clock moves on (also across a minute and a year)."""
    now = [start]
    # journal's own view of the time module only: other code keeps the real clock
    monkeypatch.setattr(journal, "time", SimpleNamespace(time=lambda: now[0], gmtime=time.gmtime,
                                                         strftime=time.strftime))
    first = utc_now()
    now[0] = start + 1.0
    second = utc_now()
    expected = [datetime.fromtimestamp(t, timezone.utc) for t in (start, start + 1.0)]
    for stamp, want in zip((first, second), expected):
        assert SHAPE.fullmatch(stamp), stamp
        assert parse(stamp) == want.replace(microsecond=want.microsecond // 1000 * 1000)
