"""The operator's lock-free counters (statemachine/operator/tally.py): no count lost when many
threads count the same keys at once, and a reader sees every thread's counts, also after the
thread has ended."""
from __future__ import annotations

import threading

from statemachine.operator.tally import Tally


def test_counts_from_many_threads_add_up() -> None:
    tally = Tally()
    seen: list[int] = []
    start = threading.Barrier(8)

    def count() -> None:
        start.wait()
        for i in range(20_000):
            tally.add(("source", "get", "200"))
            tally.add(("target", "create", str(200 + i % 2)), 2)

    def read() -> None:  # scrapes while the counting goes on
        for _ in range(50):
            seen.append(sum(tally.totals().values()))

    threads = [threading.Thread(target=count) for _ in range(8)]
    reader = threading.Thread(target=read)
    for t in threads:
        t.start()
    reader.start()
    for t in [*threads, reader]:
        t.join()
    assert tally.totals() == {("source", "get", "200"): 8 * 20_000,
                              ("target", "create", "200"): 8 * 20_000,
                              ("target", "create", "201"): 8 * 20_000}
    assert seen == sorted(seen)  # a counter never goes down between scrapes
