"""Run ``smrun`` and SIGKILL it right after a chosen progress event: crash testing's harness.

    python tests/crashrun.py EVENT:STATE:N -- run PLAN --state-dir DIR ...

The crash point lives here, in the test harness, not in the product: the engine is made with one
more event sink that, at the ``N``-th event ``EVENT`` in state ``STATE``, flushes the engine's
outputs (so the journal stands as it does at that event, not at the previous batch's end) and
kills this process with SIGKILL, as ``kill -9`` would. Everything else is ``smrun`` itself.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any

from statemachine import cli
from statemachine.engine import core
from statemachine.engine.core import Engine


def crashing_engine(event: str, state: str, nth: int) -> type[Engine]:
    class CrashingEngine(Engine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._seen = 0
            self.subscribe(self._crash_at)

        def _crash_at(self, e: dict[str, Any]) -> None:
            if e["event"] == event and e.get("state") == state:
                self._seen += 1
                if self._seen == nth:
                    self.flush_outputs()
                    os.kill(os.getpid(), signal.SIGKILL)

    return CrashingEngine


def main(argv: list[str]) -> int:
    point, sep, *rest = argv
    if sep != "--":
        raise SystemExit("usage: crashrun.py EVENT:STATE:N -- SMRUN-ARGS...")
    event, state, nth = point.split(":")
    # commands.run imports the engine when it builds one: it finds this class there.
    core.Engine = crashing_engine(event, state, int(nth))  # type: ignore[misc]
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
