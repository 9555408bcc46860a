"""Running ``smrun`` as a separate process in end-to-end tests, and killing it at a chosen moment."""
from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def kill_at_event(cmd: Sequence[str], *, event: str, state: str, cwd: Path,
                  env: Mapping[str, str] | None = None) -> bool:
    """Run ``cmd`` (an ``smrun run ... --output json``) and SIGKILL it when it first reports
    ``event`` for ``state``. True if it was killed; False if it ended before that moment."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=cwd, env=dict(env) if env is not None else None)
    killed = False
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen = json.loads(line) if line.startswith("{") else {}
            if seen.get("event") == event and seen.get("state") == state:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    finally:
        if proc.poll() is None and not killed:
            proc.kill()
        proc.wait(timeout=30)
    return killed
