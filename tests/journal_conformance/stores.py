"""The two journal backends behind one test interface, for the conformance suite.

A store makes journals of one plan (``journal()``: a new writer, as a new process would be) and
plays what the outside world does to that plan's journal: a crash mid-write (``tear``: the file's
half-written last line; the cluster's write that landed but whose answer was lost, so the client
retried it and got 409), a writer that dies (``crash``) and another writer that writes between
this one's read and its write (``interfere``). The cluster store runs against the simulated
clusters over HTTPS through smrun's ``kubernetes``-backed client.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from statemachine.clusterjournal import ClusterJournalBackend, owner_reference
from statemachine.engine.journal import Journal
from statemachine.errors import Conflict
from statemachine.k8s import Cluster, ObjectRef
from statemachine.sim.cluster import SimulatedClusters

OTHER = {"ts": "2026-12-04T00:00:00.000Z", "type": "note", "vm": "shop/other", "by": "other"}


class FileStore:
    name = "file"
    #: Whether a write after someone else's is refused (the file appends after it instead:
    #: O_APPEND cannot overwrite).
    refuses_interleaved = False

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "state" / "plan"

    def journal(self, *, successor: bool = False) -> Journal:
        return Journal(self.dir)

    def crash(self, journal: Journal) -> None:
        """The writing process dies: its buffer is lost, its lock goes with it."""
        journal.backend.close(drop=True)
        journal.unlock()

    def tear(self, journal: Journal) -> None:
        """The process died in the middle of writing a line."""
        with open(self.dir / "journal.jsonl", "ab") as fh:
            fh.write(b'{"ts":"2026-12-04T00:00:00.000Z","type":"state_ent')
        self.crash(journal)

    def interfere(self) -> None:
        with open(self.dir / "journal.jsonl", "ab") as fh:
            fh.write(json.dumps(OTHER).encode() + b"\n")


class _LostAnswer:
    """A cluster whose next data write lands but whose answer is lost: the client sends it
    again, as its retry of a dropped connection does, and gets the second answer (409)."""

    def __init__(self, api: Cluster) -> None:
        self.api = api
        self.armed = True
        self.retry_refused = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    def patch(self, ref: ObjectRef, patch: Any, **kw: Any) -> Any:
        answer = self.api.patch(ref, patch, **kw)
        if self.armed and "data" in patch:
            self.armed = False
            try:
                return self.api.patch(ref, patch, **kw)
            except Conflict:
                self.retry_refused = True  # the stale resourceVersion: a real 409
                raise
        return answer


class ClusterStore:
    name = "cluster"
    refuses_interleaved = True
    namespace = "default"
    plan = "smrun-journal-conformance"

    def __init__(self, sim: SimulatedClusters, tmp_path: Path) -> None:
        from statemachine.k8s.client import connect

        self.tmp = tmp_path
        self.api = connect(name="journal", kubeconfig=sim.kubeconfig_path, context="target",
                           cache_dir=tmp_path / "cache")
        owner = self.api.create({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "the-plan", "namespace": self.namespace}})
        self.owner = owner_reference(owner)
        self.made = 0

    def backend(self, *, take_over: bool = False, chunk_bytes: int | None = None,
                api: Any = None) -> ClusterJournalBackend:
        self.made += 1
        extra = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
        return ClusterJournalBackend(api or self.api, namespace=self.namespace, name=self.plan,
                                     identity=f"writer-{self.made}", owner=self.owner,
                                     labels={"smrun.io/plan": "conformance"},
                                     take_over=take_over, **extra)

    def journal(self, *, successor: bool = False, **kw: Any) -> Journal:
        # A successor is what the operator makes once it holds the Plan's Lease: it takes over
        # from a writer that died (which left its mark on the journal).
        return Journal(self.tmp / "local", backend=self.backend(take_over=successor, **kw))

    def crash(self, journal: Journal) -> None:
        from statemachine.errors import StateDirError

        journal.backend.fence(StateDirError("killed"))  # nothing more leaves this writer

    def tear(self, journal: Journal) -> None:
        backend = journal.backend
        assert isinstance(backend, ClusterJournalBackend)
        lossy = _LostAnswer(backend.api)
        backend.api = lossy  # type: ignore[assignment]
        journal.append("state_entered", vm="shop/web-1", state="Torn")
        journal.flush()  # the 409 of its own retry is recognised: no error
        assert lossy.retry_refused
        self.crash(journal)

    def interfere(self) -> None:
        other = self.journal(successor=True)
        other.lock()
        other.backend.write(json.dumps(OTHER).encode() + b"\n")
        other.flush()

    def objects(self) -> list[dict[str, Any]]:
        return self.api.list("v1", "ConfigMap", namespace=self.namespace,
                             label_selector=f"smrun.io/journal={self.plan}")

    def close(self) -> None:
        self.api.close()
