"""A journal kept in the cluster: numbered ConfigMaps owned by the Plan (operator mode).

:class:`ClusterJournalBackend` stores a :class:`~statemachine.engine.journal.Journal`'s lines in
ConfigMaps ``<name>-0``, ``<name>-1``, ... in the Plan's namespace, so that any replica of the
operator can resume a run from the cluster alone (no shared volume). Each object carries the
smrun labels (``app.kubernetes.io/name: smrun``, ``smrun.io/plan``, ``smrun.io/journal: <name>``)
and an ownerReference to the Plan, so the garbage collector removes it with the Plan.

How it is written:

- **One request per flush.** Each flush adds one key to the newest object (``data``, key = the
  flush's sequence number, ``00000000``, ``00000001``, ..., value = its lines), with a merge
  patch: only the new lines travel, never the whole journal. The engine group-commits, so this
  is one request per batch of the loop (or per group of creates), not one per entry. The
  flushes after a batch (``flush(wait=False)``) are sent by a thread of the backend's, so the
  engine's loop does not wait for a round trip; every other flush (before a create, after a
  ``created``, at the end) waits for the API server's answer.
- **Optimistic concurrency.** Every patch carries the ``resourceVersion`` this writer last saw
  of the object it writes; if anything else changed it meanwhile, the API server answers 409
  and the journal is refused for good (a ``StateDirError``: the engine stops). It never
  overwrites. The one 409 that is not another writer is our own write retried after its answer
  was lost (the client retries transient errors): the object then holds our key with our lines
  and our writer mark, which is checked before anything is concluded.
- **One writer.** :meth:`lock` marks the newest object with ``smrun.io/journal-writer`` (this
  writer's identity plus a random suffix) by a conditional patch. A second writer is refused
  (``LockHeld``) unless it is created with ``take_over``: the operator's, which acts only while
  it holds the Plan's Lease (that Lease, not this mark, says who may act). Taking over is itself
  a conditional write on the newest object, so every later write of the writer before (which
  carries the older resourceVersion) gets 409: a replica that lost its Lease can no longer write
  the journal even if it has not noticed yet.
- **Size.** An object holds at most ``chunk_bytes`` of data (keys and values, as the API server
  counts them; the limit is 1 MiB). When the next flush does not fit, the newest object is
  sealed (``smrun.io/journal-sealed``, again a conditional patch) and the next one is created
  with the writer mark. A single entry larger than an object can hold is refused.

A write the API server acknowledged is in etcd: a flush is as durable as a sync. Reading lists
the objects by label (one request) and yields their lines in order. It does not decide what is
written or when (the :class:`~statemachine.engine.journal.Journal` does), and it talks to the
cluster only through :class:`~statemachine.k8s.Cluster`.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from statemachine.errors import ClusterError, Conflict, JournalCorrupt, LockHeld, StateDirError
from statemachine.k8s import Cluster, Obj, ObjectRef

logger = logging.getLogger("statemachine.journal")

LABEL = "smrun.io/journal"
WRITER = "smrun.io/journal-writer"
SEALED = "smrun.io/journal-sealed"
#: Data bytes per object: the API server refuses a ConfigMap whose data (keys and values) is
#: over 1 MiB; the rest of the object (metadata) is far below what is left.
CHUNK_BYTES = 1000 * 1024
_KEY_DIGITS = 8
_TAKE_TRIES = 5


def _where(namespace: str, name: str) -> Path:
    return Path(f"configmaps/{namespace}/{name}")


def _data_size(data: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())


class ClusterJournalBackend:
    """A journal's lines in ConfigMaps ``<name>-<n>`` (see the module docstring)."""

    durable_flush = True

    def __init__(self, api: Cluster, *, namespace: str, name: str, identity: str,
                 owner: Mapping[str, Any] | None = None,
                 labels: Mapping[str, str] | None = None, take_over: bool = False,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.where = _where(namespace, name)
        self.writer = f"{identity}/{uuid.uuid4().hex[:8]}"
        self.owner = dict(owner) if owner is not None else None
        self.labels = {"app.kubernetes.io/name": "smrun", **(labels or {}), LABEL: name}
        self.take_over = take_over
        self.chunk_bytes = chunk_bytes
        self._buf_lock = threading.Lock()   # the buffer (loop thread and I/O pool)
        self._send_lock = threading.Lock()  # one write in flight at a time, in order
        self._pending: list[bytes] = []
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._closed = False
        self._locked = False
        self._error: StateDirError | None = None
        # The newest object as this writer last wrote it (valid once locked).
        self._tail = -1
        self._rv = ""
        self._size = 0
        self._seq = 0

    # -- objects ----------------------------------------------------------------------------------
    def _ref(self, index: int) -> ObjectRef:
        return ObjectRef("v1", "ConfigMap", self.namespace, f"{self.name}-{index}")

    def _objects(self) -> list[Obj]:
        """Every object of the journal, in order; a gap in the numbering is corruption."""
        try:
            items = self.api.list("v1", "ConfigMap", namespace=self.namespace,
                                  label_selector=f"{LABEL}={self.name}")
        except ClusterError as exc:
            raise self._error_for("read the journal", exc) from None
        numbered: dict[int, Obj] = {}
        prefix = f"{self.name}-"
        for obj in items:
            suffix = str(obj["metadata"]["name"]).removeprefix(prefix)
            if suffix.isdigit():
                numbered[int(suffix)] = obj
        ordered = [numbered[i] for i in sorted(numbered)]
        if sorted(numbered) != list(range(len(numbered))):
            raise JournalCorrupt(f"{self.where}: journal objects {sorted(numbered)} are not "
                                 "numbered 0..n (one was removed)")
        return ordered

    def _error_for(self, doing: str, exc: ClusterError) -> StateDirError:
        return StateDirError(f"{self.where}: cannot {doing}: {exc} (journal in the cluster; exit 4: "
                             "nothing more was applied; it resumes once this is fixed)")

    def _conflict(self, writer: str) -> StateDirError:
        by = f"by {writer}" if writer and writer != self.writer else "by someone else"
        return StateDirError(f"{self.where}: cannot write the journal: it was changed {by} "
                               "since this writer last wrote it (another writer took it over); "
                               "nothing was overwritten")

    def _manifest(self, index: int, *, writer: bool) -> Obj:
        meta: dict[str, Any] = {"name": f"{self.name}-{index}", "namespace": self.namespace,
                                "labels": dict(self.labels)}
        if writer:
            meta["annotations"] = {WRITER: self.writer}
        if self.owner is not None:
            meta["ownerReferences"] = [self.owner]
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}}

    def _adopt(self, obj: Obj, index: int, seq: int) -> None:
        self._tail, self._rv = index, str(obj["metadata"]["resourceVersion"])
        self._size = _data_size(obj.get("data") or {})
        self._seq = seq

    @staticmethod
    def _next_seq(objects: list[Obj]) -> int:
        keys = [int(k) for o in objects for k in (o.get("data") or {}) if k.isdigit()]
        return max(keys) + 1 if keys else 0

    # -- lock -------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Mark the newest object with this writer (see the module docstring)."""
        for _ in range(_TAKE_TRIES):
            objects = self._objects()
            seq = self._next_seq(objects)
            try:
                if not objects or (objects[-1]["metadata"].get("annotations") or {}).get(SEALED):
                    index = len(objects)
                    if objects:
                        self._refuse_other_writer(objects[-1])
                    created = self.api.create(self._manifest(index, writer=True))
                    self._adopt(created, index, seq)
                else:
                    tail = objects[-1]
                    self._refuse_other_writer(tail)
                    patched = self.api.patch(self._ref(len(objects) - 1), {"metadata": {
                        "resourceVersion": tail["metadata"]["resourceVersion"],
                        "annotations": {WRITER: self.writer}}})
                    self._adopt(patched, len(objects) - 1, seq)
            except Conflict:
                continue  # it changed between the read and the write: look again
            except ClusterError as exc:
                raise self._error_for("take the journal", exc) from None
            self._locked = True
            return
        raise StateDirError(f"{self.where}: cannot take the journal: it kept changing while "
                            f"{_TAKE_TRIES} tries read it (another writer is active)")

    def _refuse_other_writer(self, obj: Obj) -> None:
        holder = (obj["metadata"].get("annotations") or {}).get(WRITER)
        if holder and holder != self.writer and not self.take_over:
            raise LockHeld(f"plan is already running (journal {self.where} held by {holder}); "
                           "wait for it to finish or cancel it")

    def unlock(self) -> None:
        if not self._locked:
            return
        self._locked = False
        if self._error is not None:
            return  # not ours any more, or unreachable: leave the mark to the next writer
        try:
            self.api.patch(self._ref(self._tail), {"metadata": {
                "resourceVersion": self._rv, "annotations": {WRITER: None}}})
        except ClusterError as exc:
            logger.info("%s: writer mark not removed: %s", self.where, exc)

    def probe(self) -> None:
        """Nothing more to find: :meth:`lock` wrote (a create or a patch) and was acknowledged."""

    def reset(self) -> None:
        """Delete every object of the journal, then take a fresh one if this writer held it."""
        try:
            for obj in self._objects():
                self.api.delete(ObjectRef.of(obj))
        except ClusterError as exc:
            raise self._error_for("start a fresh journal", exc) from None
        if self._locked:
            self._locked = False
            self.lock()

    # -- entries ----------------------------------------------------------------------------------
    def entries(self) -> Iterator[dict[str, Any]]:
        for obj in self._objects():
            data: Mapping[str, str] = obj.get("data") or {}
            name = obj["metadata"]["name"]
            for key in sorted((k for k in data if k.isdigit()), key=int):
                for number, line in enumerate(data[key].splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                    except (ValueError, RecursionError):
                        raise JournalCorrupt(f"{_where(self.namespace, name)}: data {key} line "
                                             f"{number}: not a JSON line") from None
                    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                        raise JournalCorrupt(f"{_where(self.namespace, name)}: data {key} line "
                                             f"{number}: not a journal entry (no type)")
                    yield entry

    def write(self, data: bytes, *, flush: bool = False) -> None:
        with self._buf_lock:
            if self._closed:
                raise StateDirError(f"{self.where}: the journal is closed")
            if self._error is not None:
                raise self._error
            self._pending.append(data)
        if flush:
            self.flush()

    def flush(self, *, wait: bool = True) -> bool:
        if not wait:
            with self._buf_lock:
                if self._error is not None:
                    raise self._error
                if self._closed or not self._pending:
                    return not self._closed
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                                     name=f"smrun-journal-{self.name}")
                    self._flusher.start()
            self._wake.set()
            return True
        with self._send_lock:
            with self._buf_lock:
                if self._error is not None:
                    raise self._error
                if self._closed and not self._pending:
                    return False
                lines, self._pending = self._pending, []
            if not lines:
                return True
            if not self._locked:
                self._error = StateDirError(f"{self.where}: cannot write the journal: it was "
                                            "not taken (lock) first")
                raise self._error
            try:
                self._send(lines)
            except StateDirError as exc:
                self._error = exc  # the rest is dropped, as a kill -9 would drop it
                raise
        return True

    def _flush_loop(self) -> None:
        """The engine's flushes after its batches, sent off its loop (one at a time, coalesced:
        what piles up during a write goes in the next)."""
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            try:
                self.flush()
            except StateDirError:
                return  # kept in _error: the journal's next call raises it and stops the engine

    def sync(self) -> None:
        self.flush()  # acknowledged by the API server: in etcd

    def fence(self, error: StateDirError) -> None:
        """Send nothing more, not even the removal of the writer mark (the next writer's)."""
        with self._buf_lock:
            if self._error is None:
                self._error = error
            self._pending = []

    def close(self, *, drop: bool) -> None:
        try:
            if not drop and self._error is None:
                self.flush()
        finally:
            with self._buf_lock:
                self._closed = True
                self._pending = []
            self._wake.set()  # the flusher thread ends

    # -- writing ----------------------------------------------------------------------------------
    def _send(self, lines: list[bytes]) -> None:
        """``lines`` as few writes as fit, rolling over to a new object when one is full."""
        start = 0
        while start < len(lines):
            key = f"{self._seq:0{_KEY_DIGITS}d}"
            room = self.chunk_bytes - self._size - len(key)
            end, size = start, 0
            while end < len(lines) and size + len(lines[end]) <= room:
                size += len(lines[end])
                end += 1
            if end == start:
                if self._size == 0:
                    raise StateDirError(
                        f"{self.where}: cannot write the journal: an entry of {len(lines[start])} "
                        f"bytes is larger than a journal object holds ({self.chunk_bytes})")
                self._roll_over()
                continue
            self._write_key(key, b"".join(lines[start:end]).decode())
            start = end

    def _write_key(self, key: str, text: str) -> None:
        ref = self._ref(self._tail)
        try:
            answer = self.api.patch(ref, {"metadata": {"resourceVersion": self._rv},
                                          "data": {key: text}})
        except Conflict:
            answer = self._own_write_landed(ref, lambda o: (o.get("data") or {}).get(key) == text)
        except ClusterError as exc:
            raise self._error_for("write the journal", exc) from None
        self._rv = str(answer["metadata"]["resourceVersion"])
        self._size += len(key.encode()) + len(text.encode())
        self._seq += 1

    def _own_write_landed(self, ref: ObjectRef, ours: Any) -> Obj:
        """After a 409: the object if it shows that our own earlier try of this very write
        landed (the client retried after a lost answer); otherwise another writer's: refuse."""
        try:
            current = self.api.fetch(ref)
        except ClusterError as exc:
            raise self._error_for("write the journal", exc) from None
        if current is None:
            raise self._conflict("")
        writer = (current["metadata"].get("annotations") or {}).get(WRITER, "")
        if writer == self.writer and ours(current):
            return current
        raise self._conflict(writer)

    def _roll_over(self) -> None:
        """Seal the newest object (conditionally: a writer that lost the journal stops here)
        and start the next one."""
        ref = self._ref(self._tail)
        try:
            self.api.patch(ref, {"metadata": {"resourceVersion": self._rv,
                                              "annotations": {SEALED: "true"}}})
        except Conflict:
            self._own_write_landed(ref, lambda o: bool(
                (o["metadata"].get("annotations") or {}).get(SEALED)))
        except ClusterError as exc:
            raise self._error_for("write the journal", exc) from None
        index = self._tail + 1
        try:
            created = self.api.create(self._manifest(index, writer=True))
        except Conflict:
            created = self._own_write_landed(self._ref(index), lambda o: not o.get("data"))
        except ClusterError as exc:
            raise self._error_for("write the journal", exc) from None
        self._adopt(created, index, self._seq)


def owner_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``obj`` (the Plan): its journal goes with it."""
    meta = obj["metadata"]
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
            "uid": meta["uid"]}
