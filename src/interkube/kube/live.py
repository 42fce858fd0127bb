"""A cluster from its API: list, then watch, each resource DNS reads; relist on 410 Gone.

:mod:`interkube.kube.access` gives us the configuration and the authenticated HTTP client
(httpx2, as lightkube's); the list and the watch are done here with it directly, because
lightkube's own watch hides what a DNS cache needs to stay correct:

* it does not ask for bookmarks (``allowWatchBookmarks``) and would decode a bookmark as an
  object; we read them to advance the resourceVersion through quiet periods;
* on 410 Gone it restarts the watch without a resourceVersion, which replays adds but loses
  the deletes made in between; we relist and swap in a whole new index instead;
* it decodes every object into full typed models; we decode only the fields DNS keeps, and we
  need the raw events to notice a stream that has gone silent.

One supervisor task per cluster lists every resource (paged), swaps the new index in, then runs
one watch per resource. A watch that ends (the server's timeout), breaks or goes silent is
started again from the last resourceVersion; a 410 at any point, or any other ERROR event in a
watch stream, sends the supervisor back to a full list. Failures back off exponentially with
jitter; the cluster keeps serving its last data meanwhile and logs once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from dataclasses import dataclass
from typing import Any

import httpx2
import msgspec

from interkube.errors import KubeCredentialsError, KubeError, KubeForbidden, WatchExpired
from interkube.kube import access as api_access
from interkube.kube.cluster import LIST, Cluster
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex
from interkube.kube.objects import (
    NAMESPACES,
    SERVICE_EXPORTS,
    SERVICE_IMPORTS,
    Kind,
    MalformedObject,
    identity_from_json,
)
from interkube.pkg.backoff import retry_delay

log = logging.getLogger("interkube.plugin.kubernetes")

#: Resources a cluster may not have (the MCS CRDs) or may not let us read (Namespaces, which
#: CoreDNS's ClusterRole grants but a narrower one may not): a 404 or 403 leaves them out.
OPTIONAL = frozenset({NAMESPACES.resource, SERVICE_EXPORTS.resource, SERVICE_IMPORTS.resource})


class WatchFailed(KubeError):
    """The API server ended a watch with an ERROR event other than 410 Gone, e.g. the 500
    "PrevKv=nil" that a watch starting exactly at etcd's compaction revision gets. Starting the
    watch again from the same resourceVersion would meet the same error, so the source lists
    again, as client-go's reflector does after any watch error."""


@dataclass(frozen=True)
class LiveOptions:
    """Timing of the list and watch; the defaults suit a real cluster, tests shorten them."""

    page_size: int = 500
    request_timeout: float = 30.0               # connect and read, for lists
    watch_timeout: tuple[int, int] = (300, 600)  # timeoutSeconds asked of the server, drawn per watch
    #: A watch that sends nothing (no event, no bookmark) for this long is started again. The
    #: API server's watch cache sends a bookmark about every minute.
    silence: float = 90.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class _ListMeta(msgspec.Struct):
    resourceVersion: str = ""
    # `continue` is a Python keyword: msgspec maps the field name.
    next: str = msgspec.field(name="continue", default="")


class _ListDoc(msgspec.Struct):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[msgspec.Raw] | None = None


class _Event(msgspec.Struct):
    type: str
    object: msgspec.Raw


class _Status(msgspec.Struct):
    code: int = 0
    reason: str = ""
    message: str = ""


class _Versioned(msgspec.Struct):
    class _Meta(msgspec.Struct):
        resourceVersion: str = ""

    metadata: _Meta = msgspec.field(default_factory=_Meta)


class _ResourceAbsent(Exception):
    """An optional resource the API does not serve (or does not let us read)."""


def _status_message(body: bytes) -> str:
    try:
        return msgspec.json.decode(body, type=_Status).message
    except (msgspec.DecodeError, msgspec.ValidationError):
        return body[:200].decode(errors="replace").strip()


def _group_label(kind: Kind[Any]) -> str:
    return kind.api_version.rsplit("/", 1)[0] if "/" in kind.api_version else "core"


def http_error(status: int, body: bytes, verb: str, kind: Kind[Any], cluster: str, context: str | None) -> Exception:
    """The error for a failed API request, saying what was refused."""
    message = _status_message(body)
    what = f"{kind.resource} ({_group_label(kind)}/{kind.api_version.rsplit('/', 1)[-1]})"
    if status == 403:
        return KubeForbidden(f'RBAC refused verb "{verb}" on resource {what} cluster-wide: {message}',
                             cluster=cluster, context=context)
    if status == 401:
        return KubeForbidden(f"the API server did not accept our credentials (HTTP 401) to {verb} {what}",
                             cluster=cluster, context=context)
    if status == 410:
        return WatchExpired(f"{verb} {what}: resourceVersion too old (HTTP 410 Gone): {message}",
                            cluster=cluster, context=context)
    return KubeError(f"{verb} {what}: HTTP {status}: {message}", cluster=cluster, context=context)


def describe_failure(exc: BaseException, server: str) -> str:
    """Short words for a transport failure ("connection refused by https://...")."""
    if isinstance(exc, httpx2.ConnectTimeout):
        return f"cannot connect to {server} (timed out)"
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect to {server} ({exc or 'connection refused'})"
    if isinstance(exc, httpx2.TimeoutException):
        return f"{server} did not answer in time"
    if isinstance(exc, (httpx2.RemoteProtocolError, httpx2.ReadError)):
        return f"{server} dropped the connection ({exc or type(exc).__name__})"
    if isinstance(exc, KubeCredentialsError):
        return f"credentials for {server}: {exc}"
    return f"{server}: {type(exc).__name__}: {exc}"


_TRANSIENT = (httpx2.HTTPError, OSError, ssl.SSLError, KubeCredentialsError, msgspec.DecodeError,
              msgspec.ValidationError)
#: Failures of a call to an API server that a retry may get past (for the other API clients:
#: the ExternalName controller's writes); describe_failure() puts them in words.
TRANSIENT = _TRANSIENT


class LiveSource:
    """List+watch of one cluster's API."""

    def __init__(self, access: api_access.ApiAccess, config: api_access.ApiConfig, filters: Filters,
                 options: LiveOptions | None = None) -> None:
        self.access = access
        self.config = config
        self.filters = filters
        self.options = options or LiveOptions()
        self.key = ("live", access, filters, self.options)
        self.description = api_access.describe(config, access)
        self.context = config.context_name if access.kubeconfig is not None else None
        self._client: httpx2.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        #: resource -> the resourceVersion its watch continues from.
        self.versions: dict[str, str] = {}
        #: Whether a watch has applied an event since the last list (see _run).
        self._progress = False
        self._warned_namespaces = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, cluster: Cluster) -> None:
        self._client = api_access.http_client(self.config, self.options.request_timeout)
        self._task = asyncio.get_running_loop().create_task(self._run(cluster), name=f"kubernetes:{cluster.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _backoff(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row, jittered so that many clusters do not
        retry in step."""
        return retry_delay(failures, first=self.options.backoff_initial, cap=self.options.backoff_max)

    # --- the supervisor --------------------------------------------------------------------

    async def _run(self, cluster: Cluster) -> None:
        failures = 0
        watch_errors = 0  # watch error events in a row, with no event applied in between
        while True:
            try:
                index, kinds = await self._list_all(cluster)
                failures = 0
                if cluster.synced:
                    cluster.relisted()
                cluster.replace(index)
                self._progress = False
                await self._watch_all(cluster, kinds)
            except WatchExpired as exc:
                log.info("%s; listing again", exc)
                if failures == 0:
                    failures = 1
                    continue  # the first relist at once; a list that keeps expiring backs off
            except WatchFailed as exc:
                # Relist after a short pause that grows while the error keeps coming back.
                watch_errors = 1 if self._progress else watch_errors + 1
                log.warning("%s; listing again", exc)
                failures = watch_errors - 1
            except KubeError as exc:
                cluster.lost(str(exc), LIST)
            except _TRANSIENT as exc:
                cluster.lost(describe_failure(exc, self.config.cluster.server), LIST)
            except Exception:  # a bug must not leave the cluster's data frozen for good
                log.exception("cluster %s: unexpected failure; listing again", cluster.name)
            failures += 1
            await asyncio.sleep(self._backoff(failures))

    async def _list_all(self, cluster: Cluster) -> tuple[ClusterIndex, list[Kind[Any]]]:
        """A fresh index from a full list of every resource, and the resources to watch."""
        index = ClusterIndex()
        served: list[Kind[Any]] = []
        for kind in self.filters.kinds():
            try:
                await self._list(cluster, kind, index)
            except _ResourceAbsent:
                continue
            served.append(kind)
        return index, served

    async def _watch_all(self, cluster: Cluster, kinds: list[Kind[Any]]) -> None:
        """Watch every resource until one of them needs a relist (WatchExpired)."""
        tasks = [asyncio.get_running_loop().create_task(self._watch(cluster, kind)) for kind in kinds]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises the first failure (only WatchExpired, WatchFailed leave _watch)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- list ------------------------------------------------------------------------------

    def _params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.filters.selector:
            params["labelSelector"] = self.filters.selector.text
        return params

    async def _list(self, cluster: Cluster, kind: Kind[Any], index: ClusterIndex) -> None:
        """Every object of ``kind`` into ``index``, page by page (a page is dropped once read)."""
        assert self._client is not None
        params = {**self._params(), "limit": str(self.options.page_size)}
        while True:
            resp = await self._client.get(self.filters.path(kind), params=params)
            if resp.status_code == 410 and "continue" in params:
                # The continue token expired (the list took longer than the API keeps it): the
                # pages read so far are of an old version, so the whole list starts again.
                raise WatchExpired(f"list {kind.resource}: the continue token expired", cluster=cluster.name,
                                   context=self.context)
            if resp.status_code != 200:
                if kind.resource in OPTIONAL and resp.status_code in (403, 404):
                    # (Scoped to one namespace, as a sidecar with a Role is, that is expected.)
                    if kind is NAMESPACES and not self._warned_namespaces and self.filters.scope is None:
                        self._warned_namespaces = True
                        log.warning("cluster %s: cannot list namespaces (HTTP %d): a namespace then exists "
                                    "for DNS only while it holds a Service (grant list and watch on "
                                    "namespaces, as CoreDNS's ClusterRole does)", cluster.name, resp.status_code)
                    log.debug("cluster %s: %s not readable (HTTP %d); leaving it out", cluster.name,
                              kind.resource, resp.status_code)
                    raise _ResourceAbsent(kind.resource)
                raise http_error(resp.status_code, resp.content, "list", kind, cluster.name, self.context)
            doc = msgspec.json.decode(resp.content, type=_ListDoc)
            for raw in doc.items or ():
                self._put(cluster, kind, raw, index)
            if not doc.metadata.next:
                break
            params["continue"] = doc.metadata.next
        self.versions[kind.resource] = doc.metadata.resourceVersion

    def _put(self, cluster: Cluster, kind: Kind[Any], raw: msgspec.Raw | bytes,
             index: ClusterIndex | None) -> str:
        """Decode one object and put it into ``index`` (or, with None, the cluster's current
        index, telling its subscribers); returns its resourceVersion."""
        try:
            read = kind.from_json(raw)
        except MalformedObject as exc:
            ident = identity_from_json(raw)
            cluster.skipped(kind.resource, ident, str(exc))
            record, key, version = None, ident, _resource_version(raw)
        else:
            record, key, version = self.filters.keep(kind, read), (read.namespace, read.name), read.resource_version
        if key[1]:
            if index is None:
                cluster.apply(kind.resource, key, record)
            else:
                index.put(kind.resource, key, record)
        return version

    # --- watch -----------------------------------------------------------------------------

    async def _watch(self, cluster: Cluster, kind: Kind[Any]) -> None:
        """Keep a watch of ``kind`` running; returns never, raises WatchExpired for a relist."""
        failures = 0
        while True:
            try:
                await self._watch_once(cluster, kind)
                failures = 0
            except (WatchExpired, WatchFailed):
                raise
            except httpx2.ReadTimeout:
                log.debug("cluster %s: the %s watch was silent for %gs; starting it again", cluster.name,
                          kind.resource, self.options.silence)
                failures = 0
            except KubeError as exc:
                cluster.lost(str(exc), kind.resource)
                failures += 1
            except _TRANSIENT as exc:
                cluster.lost(describe_failure(exc, self.config.cluster.server), kind.resource)
                failures += 1
            cluster.watch_restarted(kind.resource)
            if failures:
                await asyncio.sleep(self._backoff(failures))

    async def _watch_once(self, cluster: Cluster, kind: Kind[Any]) -> None:
        """One watch request, read until the server ends it."""
        assert self._client is not None
        low, high = self.options.watch_timeout
        params = {**self._params(), "watch": "1", "allowWatchBookmarks": "true",
                  "resourceVersion": self.versions[kind.resource],
                  "timeoutSeconds": str(random.randint(low, high))}
        timeout = httpx2.Timeout(self.options.request_timeout, read=self.options.silence)
        async with self._client.stream("GET", self.filters.path(kind), params=params, timeout=timeout) as resp:
            if resp.status_code != 200:
                raise http_error(resp.status_code, await resp.aread(), "watch", kind, cluster.name, self.context)
            cluster.contact(kind.resource)
            pending = bytearray()
            async for chunk in resp.aiter_bytes():
                pending += chunk
                start = 0
                while (end := pending.find(b"\n", start)) >= 0:
                    if end > start:
                        self._event(cluster, kind, bytes(pending[start:end]))
                    start = end + 1
                del pending[:start]
            if pending.strip():
                self._event(cluster, kind, bytes(pending))

    def _event(self, cluster: Cluster, kind: Kind[Any], line: bytes) -> None:
        try:
            event = msgspec.json.decode(line, type=_Event)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise KubeError(f"watch {kind.resource}: not a watch event: {exc}", cluster=cluster.name,
                            context=self.context) from None
        if event.type == "ERROR":
            status = msgspec.json.decode(event.object, type=_Status)
            if status.code == 410:
                raise WatchExpired(f"watch {kind.resource}: {status.message or 'resourceVersion too old'} "
                                   f"(410 {status.reason or 'Gone'})", cluster=cluster.name, context=self.context)
            raise WatchFailed(f"watch {kind.resource}: error event {status.code} {status.reason}: {status.message}",
                              cluster=cluster.name, context=self.context)
        if event.type == "BOOKMARK":
            version = _resource_version(event.object)
        elif event.type in ("ADDED", "MODIFIED"):
            version = self._put(cluster, kind, event.object, None)
        elif event.type == "DELETED":
            namespace, name = identity_from_json(event.object)
            if name:
                cluster.apply(kind.resource, (namespace, name), None)
            version = _resource_version(event.object)
        else:
            raise KubeError(f"watch {kind.resource}: unknown event type {event.type!r}", cluster=cluster.name,
                            context=self.context)
        if version:
            self.versions[kind.resource] = version
        if event.type != "BOOKMARK":
            self._progress = True
        cluster.contact()


def _resource_version(raw: msgspec.Raw | bytes) -> str:
    try:
        return msgspec.json.decode(raw, type=_Versioned).metadata.resourceVersion
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def live_source(access: api_access.ApiAccess, filters: Filters, cluster: str,
                options: LiveOptions | None = None) -> LiveSource:
    """A live source for ``access``; raises KubeconfigError (file, context) when unusable."""
    config = api_access.resolve(access, cluster)
    return LiveSource(access, config, filters, options)

