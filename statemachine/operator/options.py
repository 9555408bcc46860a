"""What ``smrun operator`` was asked to do: the parsed command line, nothing else."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OperatorOptions:
    kubeconfig: Path | None
    context: str | None
    namespaces: tuple[str, ...]
    """Empty: every namespace."""
    operator_id: str
    state_dir: Path
    metrics_port: int | None = None
    health_port: int | None = None
    lease_seconds: int = 15
    """A Lease per Plan, held this long without renewal; 0: no Leases (a single replica)."""

    @classmethod
    def build(cls, *, kubeconfig: Path | None, context: str | None, namespaces: tuple[str, ...],
              operator_id: str | None, state_dir: Path, metrics_port: int | None = None,
              health_port: int | None = None, lease_seconds: int = 15) -> OperatorOptions:
        # The Deployment passes the pod name through SMRUN_OPERATOR_ID (manifests.py).
        ident = operator_id or os.environ.get("SMRUN_OPERATOR_ID") or \
            f"{socket.gethostname()}-{os.getpid()}"
        return cls(kubeconfig, context, namespaces, ident, state_dir, metrics_port, health_port,
                   lease_seconds)
