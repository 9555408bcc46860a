"""Running ``smrun`` as a separate process in end-to-end tests, and killing it at a chosen moment."""
from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


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


def cancel_at_event(cmd: Sequence[str], cancel: Sequence[str], *, event: str, state: str,
                    cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 240
                    ) -> tuple[int, list[dict[str, Any]], subprocess.CompletedProcess[str] | None]:
    """Run ``cmd`` (an ``smrun run ... --output json``); when it first reports ``event`` for
    ``state``, run ``cancel`` (an ``smrun cancel ...``) and let the run finish. Returns the run's
    exit code, every event it printed, and the cancel command's result (``None``: never ran)."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=cwd, env=dict(env) if env is not None else None)
    seen: list[dict[str, Any]] = []
    canceled: subprocess.CompletedProcess[str] | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            item = json.loads(line) if line.startswith("{") else {}
            seen.append(item)
            if canceled is None and item.get("event") == event and item.get("state") == state:
                canceled = subprocess.run(list(cancel), capture_output=True, text=True,
                                          timeout=timeout, cwd=cwd,
                                          env=dict(env) if env is not None else None)
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, seen, canceled
