"""A shared watch: one worker lists and watches a cluster for every worker (opt-in).

In a multi-worker server each worker runs its own list+watch of every cluster (see
:mod:`interkube.server.workers` for why that is the default). With the shared watch
(``INTERKUBE_SHARED_WATCH=1`` in the environment of ``interkube serve --workers N``), worker 0
runs it alone and passes the stripped records on, over one unix socket per cluster in the
workers' private directory:

* :class:`LeaderSource` (worker 0) wraps the live source. To each worker that connects it sends
  the whole index (in frames of 500 records, as a list comes in pages), then every change the
  watch makes, the whole index again after a relist, and, once a second and whenever it
  changes, the cluster's sync age and failure state.
* :class:`FollowerSource` (the other workers) builds its own index from what it is sent and
  applies the changes to it, so each worker still answers from its own memory. When worker 0
  goes away (it died and the parent starts it again), a follower keeps serving its last data,
  reports the cluster down, and connects again, starting over from the whole index. It stays
  down until that whole index has come: a restarted worker 0 sends it only once it has listed
  the API, and until then the follower's data misses whatever changed meanwhile (worker 0's
  state frames say nothing fails, as it has not tried yet, but its data is not there).

A frame is a 4-byte length and a pickle: both ends are processes of one server, forked from one
parent, and the socket is in a directory only its user can open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import os
import pickle
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from interkube.kube.cluster import Cluster, Source, release_freed_memory
from interkube.kube.index import ClusterIndex, Key
from interkube.kube.objects import Record

log = logging.getLogger("interkube.plugin.kubernetes")

FULL, MORE, APPLY, STATE = "full", "more", "apply", "state"
#: Records per frame of a whole index, as a list comes in pages: the garbage of one page is
#: reused by the next. Measured with bench/workers_kube.py (10,000 Services): a follower's data
#: took 27 MiB resident when the index came as one pickle, 20 MiB in pages of 500 (19 MiB in a
#: worker that lists the API itself).
PAGE = 500
#: The failing parts a follower reports: its link to worker 0, and worker 0's own state.
FEED, API = "feed", "api"
#: Seconds between two state frames (the sync age of a follower is this fresh).
HEARTBEAT = 1.0
#: A follower this far behind (bytes it has not read yet) is cut off: it connects again and
#: starts over from the whole index, rather than growing worker 0's memory without bound.
MAX_BACKLOG = 64 << 20
#: How long a follower may fail to reach worker 0 at its start before it says so (worker 0 is
#: normally there within a second: both are forked at once).
STARTUP_GRACE = 5.0


def socket_path(directory: str, name: str, key: Hashable) -> str:
    """The socket of cluster ``name`` with source ``key``: the same path in every worker."""
    digest = hashlib.sha256(repr((name, _canonical(key))).encode()).hexdigest()[:16]
    return os.path.join(directory, f"kube-{digest}.sock")


def _canonical(value: Any) -> Any:
    """``value`` with sets sorted, so that its repr does not depend on iteration order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value).__name__, tuple(_canonical(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (set, frozenset)):
        return "set", tuple(sorted((_canonical(v) for v in value), key=repr))
    if isinstance(value, (tuple, list)):
        return tuple(_canonical(v) for v in value)
    return value


def shared_source(inner: Source, name: str, worker: Any) -> Source:
    """``inner`` (a live source) as worker ``worker.index`` takes part in a shared watch."""
    path = socket_path(worker.socket_dir, name, inner.key)
    return LeaderSource(inner, path) if worker.index == 0 else FollowerSource(inner, path)


def _frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(4, "big") + body


class LeaderSource:
    """Worker 0's side: the live source, and a feed of every change it makes."""

    def __init__(self, inner: Source, path: str) -> None:
        self.inner = inner
        self.path = path
        self.key = inner.key
        self.description = inner.description
        self._cluster: Cluster | None = None
        self._server: asyncio.AbstractServer | None = None
        self._followers: set[asyncio.StreamWriter] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self, cluster: Cluster) -> None:
        self._cluster = cluster
        Path(self.path).unlink(missing_ok=True)  # left by a worker 0 that died
        self._server = await asyncio.start_unix_server(self._serve, self.path)
        cluster.mirrors.append(self)
        cluster.subscribe_state(self._state)
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat(), name=f"feed:{cluster.name}")
        await self.inner.start(cluster)

    async def stop(self) -> None:
        await self.inner.stop()
        cluster = self._cluster
        if cluster is not None:
            if self in cluster.mirrors:
                cluster.mirrors.remove(self)
            cluster.unsubscribe_state(self._state)
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for writer in list(self._followers):
            writer.transport.abort()
        self._followers.clear()
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        Path(self.path).unlink(missing_ok=True)

    # --- Mirror: called by the cluster as the live source changes it -----------------------

    def replaced(self, index: ClusterIndex) -> None:
        for frame in self._full(index):
            self._send_all(frame)

    def applied(self, resource: str, key: Key, record: Record | None) -> None:
        self._send_all(_frame((APPLY, resource, key, record)))

    # --- the feed --------------------------------------------------------------------------

    @staticmethod
    def _full(index: ClusterIndex) -> list[bytes]:
        """The whole index as frames: (FULL, serial, page, last), then (MORE, page, last)..."""
        records = index.records()
        frames: list[bytes] = []
        page = list(itertools.islice(records, PAGE))
        while True:
            following = list(itertools.islice(records, PAGE))
            last = not following
            frames.append(_frame((MORE, page, last) if frames else (FULL, index.serial, page, last)))
            if last:
                return frames
            page = following

    def _state_frame(self) -> bytes:
        """(STATE, sync age, down): the age is None until worker 0 has listed the API."""
        assert self._cluster is not None
        return _frame((STATE, self._cluster.sync_age(), self._cluster.down))

    def _state(self) -> None:
        self._send_all(self._state_frame())

    def _send_all(self, data: bytes) -> None:
        for writer in list(self._followers):
            if writer.transport.get_write_buffer_size() > MAX_BACKLOG:
                log.warning("a worker fell %d MB behind the shared watch of cluster %s; it starts over",
                            MAX_BACKLOG >> 20, self._cluster.name if self._cluster else "?")
                self._followers.discard(writer)
                writer.transport.abort()
            else:
                writer.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One follower: the whole index (if synced) and the state, then every change."""
        cluster = self._cluster
        assert cluster is not None
        # No await between the whole index and joining the set: no change falls in between.
        if cluster.index is not None:
            writer.writelines(self._full(cluster.index))
        writer.write(self._state_frame())
        self._followers.add(writer)
        try:
            await writer.drain()
            release_freed_memory()  # the whole index, pickled, is sent: give its pages back
            await reader.read()  # followers send nothing: this returns when one goes away
        except OSError:
            pass
        finally:
            self._followers.discard(writer)
            writer.transport.abort()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            self._state()


class FollowerSource:
    """Another worker's side: the cluster as worker 0 sends it."""

    def __init__(self, inner: Source, path: str) -> None:
        self.path = path
        self.key = inner.key  # the same cluster as worker 0's, for the registry's sharing
        self.description = f"{inner.description}, watched by worker 0"
        self._task: asyncio.Task[None] | None = None

    async def start(self, cluster: Cluster) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(cluster), name=f"follow:{cluster.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self, cluster: Cluster) -> None:
        first_failure: float | None = None
        followed = False  # whether a link to worker 0 has worked before
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                now = time.monotonic()
                first_failure = first_failure or now
                if followed or now - first_failure > STARTUP_GRACE:
                    cluster.lost(f"cannot reach worker 0, which watches its API ({exc.strerror or exc})", FEED)
                await asyncio.sleep(min(1.0, 0.05 + (now - first_failure) / 10))
                continue
            first_failure = None
            try:
                await self._follow(cluster, reader)
                reason = "worker 0, which watches its API, went away"
            except (OSError, EOFError, asyncio.IncompleteReadError, pickle.UnpicklingError) as exc:
                reason = f"lost worker 0, which watches its API ({type(exc).__name__})"
            finally:
                writer.transport.abort()
            followed = True
            cluster.lost(reason, FEED)
            await asyncio.sleep(0.05)

    @staticmethod
    async def _follow(cluster: Cluster, reader: asyncio.StreamReader) -> None:
        """Apply frames until worker 0 closes the link.

        The data is current only once this link has brought the whole index: until then the
        follower neither clears a lost link (FEED) nor moves its sync age, whatever the state
        frames say, so that it never calls data current that missed the changes made while
        worker 0 was gone. A worker 0 that has not listed yet still says whether its API fails.
        """
        building: ClusterIndex | None = None  # a whole index coming in pages
        current = False  # whether this link has brought the whole index yet
        while True:
            try:
                head = await reader.readexactly(4)
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    return  # a clean end between two frames
                raise
            message = pickle.loads(await reader.readexactly(int.from_bytes(head, "big")))
            kind, args = message[0], message[1:]
            del message
            if kind == APPLY:
                if not current:
                    # Worker 0 sends changes only to an index it has sent: one without it would
                    # change the data of before the link.
                    raise pickle.UnpicklingError("a change before the whole index")
                cluster.apply(*args)
                cluster.contact(FEED)
            elif kind in (FULL, MORE):
                if kind == FULL:
                    building, args = ClusterIndex(args[0]), args[1:]
                if building is None:
                    raise pickle.UnpicklingError("a page of a whole index without its start")
                records, last = args
                for resource, key, record in records:
                    building.put(resource, key, record)
                if last:
                    del records, args  # before replace() gives the freed memory back
                    index, building = building, None
                    cluster.replace(index)  # not counted as a relist: worker 0 counts its own
                    current = True
                    cluster.contact(FEED)
            elif kind == STATE:
                age, down = args
                if down is None:
                    cluster.restored(API)
                else:
                    cluster.lost(down, API)
                if not current:
                    if age is None and cluster.failing(FEED):
                        # Worker 0 is back (no log line: the cluster is down already).
                        cluster.lost("worker 0, which watches its API, is back and has not listed it yet", FEED)
                    continue
                cluster.contact(FEED)
                if age is not None:
                    cluster.last_contact = time.monotonic() - age
            else:
                raise pickle.UnpicklingError(f"unknown frame {kind!r}")


__all__ = ["FollowerSource", "LeaderSource", "shared_source", "socket_path"]
