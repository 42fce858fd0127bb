"""A small fake Kubernetes API server for tests: list and get over plain HTTP on 127.0.0.1.

What it fakes:

* an in-memory store of plain dict objects keyed by (group/version, plural, namespace, name),
  with a cluster-wide ``resourceVersion`` counter stamped on every object and every list;
* ``GET`` of lists, cluster-wide (``/api/v1/services``) and per namespace
  (``/api/v1/namespaces/NS/services``), and of single objects, under ``/api/v1/...`` and
  ``/apis/GROUP/VERSION/...``; equality label selectors; ``limit``/``continue`` paging;
* discovery (``/api``, ``/api/v1``, ``/apis``, ``/apis/GROUP``, ``/apis/GROUP/VERSION``) listing
  what is served, enough for a client to find its resources;
* 404 with a ``Status`` body for resources it is told are not served (a cluster without the
  ServiceCIDR API), 403 for resources it is told are forbidden, 401 without the bearer token;
* :func:`write_kubeconfig`, a kubeconfig with one context per fake (token auth, plain http);
* :func:`serving_in_thread`, for code under test that runs its own event loop (a CLI).

With ``watch=True`` it also serves watches (``?watch=1``), as kube-apiserver streams them:

* chunked JSON lines ``{"type": ..., "object": ...}`` from an event log of every add, modify and
  delete, starting after the ``resourceVersion`` asked for (or with an ADDED per object when none
  is given), filtered by label selector (an object leaving the selector is a DELETED);
* ``timeoutSeconds`` ends the stream cleanly; ``allowWatchBookmarks`` gets BOOKMARK events from
  :meth:`FakeKube.bookmark` (and every ``bookmark_interval`` seconds when set);
* faults on demand: :meth:`FakeKube.compact` (older versions then get 410 Gone, as an ERROR
  event or, with ``expire_as_status``, as the HTTP status), :meth:`FakeKube.expire_watches`
  (410 to the watches running now), :meth:`FakeKube.drop_watches` (connections cut mid-stream),
  :meth:`FakeKube.stall_watches` (streams that stay open and send nothing), :meth:`FakeKube.pause`
  and :meth:`FakeKube.resume` (the API goes away and comes back on the same port), and per-verb
  403s (:meth:`FakeKube.forbid`, naming the verb and resource as the API server does).

It counts what it serves (:attr:`FakeKube.counters`, :attr:`FakeKube.peak_watchers`): requests
per verb (a paged list counts once per page), objects and bytes listed, watch events and
bookmarks sent, so that a benchmark can say how much load its clients put on an API server.

``tls=True`` serves HTTPS with a generated CA (:attr:`FakeKube.ca_cert`) and accepts client
certificates it issued (:meth:`FakeKube.client_cert`) as well as the bearer token.

What it does not fake (yet): writes, field selectors, RBAC rules. Requests for them get a 400
Status saying so rather than a wrong answer. Handlers are looked up by verb in
:attr:`FakeKube.handlers`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import json
import ssl
import tempfile
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from interkube.pkg.atomicfile import write_atomically

Obj = dict[str, Any]


@dataclass(frozen=True)
class ResourceType:
    """One served resource: ``group`` is "" for the core API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ("get", "list")

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


NAMESPACE = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
NODE = ResourceType("", "v1", "nodes", "Node", namespaced=False)
SERVICE = ResourceType("", "v1", "services", "Service", namespaced=True)
POD = ResourceType("", "v1", "pods", "Pod", namespaced=True)
ENDPOINTS = ResourceType("", "v1", "endpoints", "Endpoints", namespaced=True)
ENDPOINT_SLICE = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", namespaced=True)
SERVICE_CIDR = ResourceType("networking.k8s.io", "v1", "servicecidrs", "ServiceCIDR", namespaced=False)
DEFAULT_TYPES: tuple[ResourceType, ...] = (NAMESPACE, NODE, SERVICE, POD, ENDPOINTS, ENDPOINT_SLICE, SERVICE_CIDR)
#: The MCS CRDs (multicluster.x-k8s.io); served only when a fake is given them in ``types``.
SERVICE_EXPORT = ResourceType("multicluster.x-k8s.io", "v1alpha1", "serviceexports", "ServiceExport", namespaced=True)
SERVICE_IMPORT = ResourceType("multicluster.x-k8s.io", "v1alpha1", "serviceimports", "ServiceImport", namespaced=True)

Handler = Callable[[web.Request, ResourceType, "str | None", "str | None"], Awaitable[web.StreamResponse]]


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    # Exactly "application/json", as kube-apiserver sends it: lightkube only turns a failed
    # response into ApiError when the content type matches to the letter.
    return web.Response(status=code, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def _json(data: Any) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


LabelTest = Callable[[Mapping[str, str]], bool]


def _label_is(key: str, value: str, want: bool) -> LabelTest:
    return lambda labels: (labels.get(key) == value) == want


def _label_present(key: str, want: bool) -> LabelTest:
    return lambda labels: (key in labels) == want


def _label_matcher(selector: str) -> LabelTest:
    """Equality-based selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, joined by commas."""
    tests: list[LabelTest] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            tests.append(_label_is(key, value, False))
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            tests.append(_label_is(key, value, True))
        elif term.startswith("!"):
            tests.append(_label_present(term[1:].strip(), False))
        elif " in " in term or " notin " in term:
            raise ValueError(f"set-based selector {term!r} is not supported by this fake")
        else:
            tests.append(_label_present(term, True))
    return lambda labels: all(test(labels) for test in tests)


class FakeKube:
    """An in-memory API server; ``async with FakeKube() as kube:`` serves it on 127.0.0.1."""

    def __init__(self, *, token: str = "fake-token", types: Iterable[ResourceType] = DEFAULT_TYPES,
                 not_served: Iterable[ResourceType] = (), forbidden: Iterable[ResourceType] = (),
                 watch: bool = False, tls: bool = False, expire_as_status: bool = False,
                 bookmark_interval: float | None = None) -> None:
        self.token = token
        hidden = set(not_served)
        self.types = {(t.group_version, t.plural): t for t in types if t not in hidden}
        # Served, but RBAC refuses every request for them (403), as for a user without the role.
        self.forbidden = set(forbidden)
        #: Verbs refused per resource type (see forbid()).
        self.forbidden_verbs: dict[ResourceType, set[str]] = {}
        self.store: dict[tuple[str, str, str | None, str], Obj] = {}
        self.resource_version = 0
        self._uids = itertools.count(1)
        self.handlers: dict[str, Handler] = {"list": self._list, "get": self._get}
        if watch:
            self.handlers["watch"] = self._watch
        self.requests: list[str] = []  # "GET /api/v1/nodes?..." in order, for assertions
        #: What was served: "list" (pages), "get", "watch" (streams opened) requests;
        #: "list_items", "list_bytes"; "watch_events" (ADDED/MODIFIED/DELETED lines sent),
        #: "bookmarks", "watch_errors", "watch_bytes". Read it, or zero it with clear().
        self.counters: Counter[str] = Counter()
        #: The most watches open at once.
        self.peak_watchers = 0
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0
        # --- watch state
        self.events: list[_Event] = []
        #: Versions at or below this are compacted away: a watch from them gets 410 Gone.
        self.compacted = 0
        self.expire_as_status = expire_as_status
        self.bookmark_interval = bookmark_interval
        self._watchers: set[_Watcher] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving = False
        # --- TLS
        self.tls = tls
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        self._pki: Any = None
        #: Common names of client certificates accepted in place of the token.
        self.cert_users: set[str] = set()

    # --- the store -----------------------------------------------------------------------

    def _type_of(self, obj: Mapping[str, Any]) -> ResourceType:
        for rtype in DEFAULT_TYPES + tuple(self.types.values()):
            if rtype.group_version == obj.get("apiVersion") and rtype.kind == obj.get("kind"):
                return rtype
        raise ValueError(f"unknown apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')}")

    def add(self, obj: Obj) -> Obj:
        """Store (or replace) ``obj``; stamps uid and resourceVersion and returns it."""
        rtype = self._type_of(obj)
        meta = obj.setdefault("metadata", {})
        if "name" not in meta:
            raise ValueError("object needs metadata.name")
        namespace = meta.get("namespace") if rtype.namespaced else None
        if rtype.namespaced and not namespace:
            meta["namespace"] = namespace = "default"
        self.resource_version += 1
        meta["resourceVersion"] = str(self.resource_version)
        meta.setdefault("uid", f"00000000-0000-0000-0000-{next(self._uids):012d}")
        key = (rtype.group_version, rtype.plural, namespace, meta["name"])
        previous = self.store.get(key)
        self.store[key] = obj
        self._record("MODIFIED" if previous is not None else "ADDED", rtype, obj, previous)
        return obj

    def add_all(self, objs: Iterable[Obj]) -> None:
        for obj in objs:
            self.add(obj)

    def delete(self, obj: Mapping[str, Any]) -> None:
        rtype = self._type_of(obj)
        meta = obj["metadata"]
        gone = self.store.pop((rtype.group_version, rtype.plural,
                               meta.get("namespace") if rtype.namespaced else None, meta["name"]))
        self.resource_version += 1
        # The API server sends the last state of a deleted object, at the delete's version.
        gone = copy.deepcopy(gone)
        gone["metadata"]["resourceVersion"] = str(self.resource_version)
        self._record("DELETED", rtype, gone, None)

    def _record(self, kind: str, rtype: ResourceType, obj: Obj, previous: Obj | None) -> None:
        self.events.append(_Event(self.resource_version, kind, rtype, copy.deepcopy(obj),
                                  copy.deepcopy(previous) if previous is not None else None))
        self._wake_watchers()

    def _wake_watchers(self) -> None:
        loop = self._loop
        if loop is None or not self._watchers:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for watcher in list(self._watchers):
            if running is loop:
                watcher.wake.set()
            else:
                loop.call_soon_threadsafe(watcher.wake.set)

    # --- serving -------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on an ephemeral port of 127.0.0.1; returns the base URL."""
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api", self._api_versions)
        app.router.add_get("/apis", self._group_list)
        app.router.add_get("/api/{version}", self._resource_list)
        app.router.add_get("/apis/{group}", self._group)
        app.router.add_get("/apis/{group}/{version}", self._resource_list)
        app.router.add_get("/api/{version}/{rest:.+}", self._resource)
        app.router.add_get("/apis/{group}/{version}/{rest:.+}", self._resource)
        self._app = app
        self._loop = asyncio.get_running_loop()
        await self._listen(0)
        return self.url

    async def _listen(self, port: int) -> None:
        self._serving = True
        self._runner = web.AppRunner(self._app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=self._ssl_context())
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def close(self) -> None:
        self._serving = False  # a watch that begins while the server shuts down ends at once
        for watcher in list(self._watchers):
            watcher.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = None

    async def pause(self) -> None:
        """The API goes away: connections are cut and the port refuses new ones."""
        self._serving = False
        for watcher in list(self._watchers):
            watcher.drop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def resume(self) -> None:
        """The API comes back on the same port, with everything it had."""
        await self._listen(self.port)

    # --- TLS -----------------------------------------------------------------------------

    def _ensure_pki(self) -> Any:
        if self._pki is None:
            from testkit.kubeapi import Pki

            self._tls_dir = tempfile.TemporaryDirectory(prefix="fakekube-tls-")
            self._pki = Pki.create(Path(self._tls_dir.name))
        return self._pki

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        pki = self._ensure_pki()
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.serving_cert), str(pki.serving_key))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is one way in, the token another
        return ctx

    @property
    def ca_cert(self) -> Path:
        """The CA that signed the serving and client certificates (tls=True)."""
        return Path(self._ensure_pki().ca_cert)

    def client_cert(self, user: str, directory: str | Path) -> tuple[Path, Path]:
        """A client certificate for ``user``, accepted from now on; (cert, key) files."""
        cert, key = self._ensure_pki().issue(user)
        self.cert_users.add(user)
        target = Path(directory)
        (target / f"{user}.crt").write_bytes(cert)
        (target / f"{user}.key").write_bytes(key)
        return target / f"{user}.crt", target / f"{user}.key"

    async def __aenter__(self) -> FakeKube:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if request.headers.get("Authorization") != f"Bearer {self.token}" and not self._cert_user(request):
            return _status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    def _cert_user(self, request: web.Request) -> bool:
        if request.transport is None:
            return False
        cert = request.transport.get_extra_info("peercert")
        if not cert:
            return False
        names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
        return any(name in self.cert_users for name in names)

    # --- discovery -----------------------------------------------------------------------

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rtype in self.types.values():
            if rtype.group and rtype.version not in groups.setdefault(rtype.group, []):
                groups[rtype.group].append(rtype.version)
        return groups

    @staticmethod
    def _group_doc(name: str, versions: list[str]) -> Obj:
        entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": entries, "preferredVersion": entries[0]}

    async def _api_versions(self, request: web.Request) -> web.Response:
        return _json({"kind": "APIVersions", "versions": ["v1"],
                      "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})

    async def _group_list(self, request: web.Request) -> web.Response:
        return _json({"kind": "APIGroupList", "apiVersion": "v1",
                      "groups": [self._group_doc(g, v) for g, v in sorted(self._groups().items())]})

    async def _group(self, request: web.Request) -> web.Response:
        name = request.match_info["group"]
        versions = self._groups().get(name)
        if versions is None:
            return _status(404, "NotFound", f"the server could not find the requested resource (group {name})")
        return _json({"kind": "APIGroup", "apiVersion": "v1", **self._group_doc(name, versions)})

    async def _resource_list(self, request: web.Request) -> web.Response:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        group_version = f"{group}/{version}" if group else version
        resources = [{"name": t.plural, "singularName": t.kind.lower(), "namespaced": t.namespaced,
                      "kind": t.kind, "verbs": list(t.verbs)}
                     for (gv, _), t in sorted(self.types.items()) if gv == group_version]
        if not resources:
            return _status(404, "NotFound", f"the server could not find the requested resource ({group_version})")
        return _json({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                      "resources": resources})

    # --- resources -----------------------------------------------------------------------

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        group_version = f"{group}/{version}" if group else version
        parts = request.match_info["rest"].strip("/").split("/")
        # namespaces/NS/PLURAL[/NAME] is a namespaced request; PLURAL[/NAME] a cluster-wide one.
        # "namespaces/NAME" alone is a get of a Namespace.
        namespace: str | None = None
        if parts[0] == "namespaces" and len(parts) >= 3:
            namespace, parts = parts[1], parts[2:]
        if len(parts) > 2:
            return _status(404, "NotFound", "subresources are not served by this fake")
        plural, name = parts[0], (parts[1] if len(parts) == 2 else None)
        rtype = self.types.get((group_version, plural))
        if rtype is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not rtype.namespaced:
            return _status(404, "NotFound", f"{plural} is not namespaced")
        if request.query.get("watch") in ("true", "1"):
            verb = "watch"
        else:
            verb = "get" if name is not None else "list"
        self.counters[verb] += 1
        if rtype in self.forbidden or verb in self.forbidden_verbs.get(rtype, ()):
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            resource = f"{plural}.{rtype.group}" if rtype.group else plural
            return _status(403, "Forbidden", f'{resource} is forbidden: User "fake" cannot {verb} resource '
                                             f'"{plural}" in API group "{rtype.group}" {scope}')
        handler = self.handlers.get(verb)
        if handler is None:
            return _status(400, "BadRequest", f"{verb} is not supported by this fake API server")
        return await handler(request, rtype, namespace, name)

    async def _get(self, request: web.Request, rtype: ResourceType, namespace: str | None,
                   name: str | None) -> web.Response:
        key = (rtype.group_version, rtype.plural, namespace if rtype.namespaced else None, name or "")
        obj = self.store.get(key)
        if obj is None:
            return _status(404, "NotFound", f'{rtype.plural} "{name}" not found')
        return _json({"apiVersion": rtype.group_version, "kind": rtype.kind, **obj})

    async def _list(self, request: web.Request, rtype: ResourceType, namespace: str | None,
                    name: str | None) -> web.Response:
        if request.query.get("fieldSelector"):
            return _status(400, "BadRequest", "fieldSelector is not supported by this fake API server")
        try:
            matches = _label_matcher(request.query.get("labelSelector", ""))
        except ValueError as exc:
            return _status(400, "BadRequest", str(exc))
        ordered = sorted(self.store.items(), key=lambda kv: (kv[0][2] or "", kv[0][3]))  # by namespace, name
        items = [obj for (gv, plural, ns, _), obj in ordered
                 if gv == rtype.group_version and plural == rtype.plural
                 and (namespace is None or ns == namespace)
                 and matches(obj.get("metadata", {}).get("labels") or {})]
        metadata: Obj = {"resourceVersion": str(self.resource_version)}
        offset = 0
        if request.query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(request.query["continue"]))
                offset = int(token["offset"])
            except (ValueError, KeyError, TypeError):
                return _status(400, "BadRequest", "invalid continue token")
            metadata["resourceVersion"] = str(token["rv"])
            if int(token["rv"]) < self.compacted:
                return _status(410, "Expired", "The provided continue parameter is too old to display a "
                                               "consistent list result.")
        limit = int(request.query.get("limit") or 0)
        if limit > 0 and offset + limit < len(items):
            token = {"offset": offset + limit, "rv": metadata["resourceVersion"]}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            items = items[offset:offset + limit]
        else:
            items = items[offset:]
        response = _json({"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version,
                          "metadata": metadata, "items": items})
        self.counters["list_items"] += len(items)
        self.counters["list_bytes"] += len(response.body)  # type: ignore[arg-type]
        return response


    # --- watch ---------------------------------------------------------------------------

    def forbid(self, rtype: ResourceType, *verbs: str) -> None:
        """RBAC refuses ``verbs`` (e.g. "watch") on ``rtype`` from now on; none: allow again."""
        if verbs:
            self.forbidden_verbs[rtype] = set(verbs)
        else:
            self.forbidden_verbs.pop(rtype, None)

    def compact(self) -> int:
        """Forget the event log up to now: watches from an older version get 410 Gone."""
        self.compacted = self.resource_version
        return self.compacted

    def bookmark(self) -> None:
        """A BOOKMARK at the current version to every watch that allows them."""
        for watcher in list(self._watchers):
            watcher.bookmark_due = True
        self._wake_watchers()

    def expire_watches(self) -> None:
        """The running watches end with an ERROR 410 event (as after an etcd compaction)."""
        self.compact()
        for watcher in list(self._watchers):
            watcher.expired = True
        self._wake_watchers()

    def drop_watches(self) -> None:
        """Cut every running watch mid-stream (no end of the chunked body)."""
        for watcher in list(self._watchers):
            watcher.drop()

    def stall_watches(self) -> None:
        """The running watches stay open and never send again (a half-dead connection)."""
        for watcher in list(self._watchers):
            watcher.stalled = True

    @property
    def watchers(self) -> int:
        """How many watches are open now."""
        return len(self._watchers)

    def _object(self, rtype: ResourceType, obj: Obj) -> Obj:
        return {"apiVersion": rtype.group_version, "kind": rtype.kind, **obj}

    def _events_for(self, event: _Event, rtype: ResourceType, namespace: str | None,
                    matches: Callable[[Mapping[str, str]], bool]) -> list[tuple[str, Obj]]:
        """What one logged change looks like to a watch of ``rtype`` with a label selector."""
        if event.rtype != rtype:
            return []
        if namespace is not None and event.obj.get("metadata", {}).get("namespace") != namespace:
            return []

        def labels(obj: Obj | None) -> Mapping[str, str]:
            return (obj or {}).get("metadata", {}).get("labels") or {}

        now = matches(labels(event.obj))
        if event.kind == "MODIFIED":
            before = event.previous is not None and matches(labels(event.previous))
            if before and not now:
                return [("DELETED", event.obj)]
            if now and not before:
                return [("ADDED", event.obj)]
        return [(event.kind, event.obj)] if now else []

    async def _watch(self, request: web.Request, rtype: ResourceType, namespace: str | None,
                     name: str | None) -> web.StreamResponse:
        try:
            matches = _label_matcher(request.query.get("labelSelector", ""))
        except ValueError as exc:
            return _status(400, "BadRequest", str(exc))
        asked = request.query.get("resourceVersion") or "0"
        since = int(asked) if asked.isdigit() else 0
        expired = since != 0 and since < self.compacted
        if expired and self.expire_as_status:
            return _status(410, "Expired", f"too old resource version: {since} ({self.compacted})")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        watcher = _Watcher(response, request, counters=self.counters)
        self._watchers.add(watcher)
        self.peak_watchers = max(self.peak_watchers, len(self._watchers))
        try:
            if expired:
                await watcher.error(410, "Expired", f"too old resource version: {since} ({self.compacted})")
                return response
            if since == 0:  # "any version": the current state as ADDED, then changes
                for (gv, plural, ns, _), obj in sorted(self.store.items(), key=lambda kv: (kv[0][2] or "", kv[0][3])):
                    if (gv, plural) == (rtype.group_version, rtype.plural) and namespace in (None, ns) \
                            and matches(obj.get("metadata", {}).get("labels") or {}):
                        await watcher.send("ADDED", self._object(rtype, obj))
                since = self.resource_version
            bookmarks = request.query.get("allowWatchBookmarks") == "true"
            timeout = float(request.query.get("timeoutSeconds") or 1800)
            deadline = asyncio.get_running_loop().time() + timeout
            sent = next((i for i, e in enumerate(self.events) if e.rv > since), len(self.events))
            while True:
                if not self._serving:
                    raise ConnectionResetError("the fake is shutting down")
                if watcher.expired:
                    await watcher.error(410, "Expired", "too old resource version")
                    return response
                if not watcher.stalled:
                    while sent < len(self.events):
                        event = self.events[sent]
                        sent += 1
                        for kind, obj in self._events_for(event, rtype, namespace, matches):
                            await watcher.send(kind, self._object(rtype, obj))
                    if watcher.bookmark_due and bookmarks:
                        watcher.bookmark_due = False
                        await watcher.send("BOOKMARK", {"kind": rtype.kind, "apiVersion": rtype.group_version,
                                                        "metadata": {"resourceVersion": str(self.resource_version)}})
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    return response  # the server's timeout: a clean end of the stream
                wait = left if self.bookmark_interval is None else min(left, self.bookmark_interval)
                watcher.wake.clear()
                try:
                    await asyncio.wait_for(watcher.wake.wait(), wait)
                except TimeoutError:
                    if self.bookmark_interval is not None:
                        watcher.bookmark_due = True
                if watcher.dropped:
                    raise ConnectionResetError("dropped by the test")
        except (ConnectionResetError, ConnectionError):
            if request.transport is not None:
                request.transport.abort()
            return response
        finally:
            self._watchers.discard(watcher)


@dataclass
class _Event:
    """One change in the fake's log: the object after it (before it, for a modify)."""

    rv: int
    kind: str               # ADDED, MODIFIED, DELETED
    rtype: ResourceType
    obj: Obj
    previous: Obj | None


@dataclass(eq=False)
class _Watcher:
    """One open watch stream and the faults set on it."""

    response: web.StreamResponse
    request: web.Request
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: bool = False
    expired: bool = False
    dropped: bool = False
    bookmark_due: bool = False
    counters: Counter[str] = field(default_factory=Counter)

    async def send(self, kind: str, obj: Obj) -> None:
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        what = {"BOOKMARK": "bookmarks", "ERROR": "watch_errors"}.get(kind, "watch_events")
        self.counters[what] += 1
        self.counters["watch_bytes"] += len(line)
        await self.response.write(line)

    async def error(self, code: int, reason: str, message: str) -> None:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}
        await self.send("ERROR", status)

    def drop(self) -> None:
        self.dropped = True
        if self.request.transport is not None:
            self.request.transport.abort()
        self.wake.set()

    def close(self) -> None:
        self.drop()


# --- objects as the API server returns them ------------------------------------------------

PortSpec = tuple[str, int, str]   # (name, port, protocol); "" for an unnamed port


def service(namespace: str, name: str, *, cluster_ips: Iterable[str] = ("10.96.0.10",),
            ports: Iterable[PortSpec] = (("http", 80, "TCP"),), headless: bool = False,
            external_name: str | None = None, publish_not_ready: bool = False,
            labels: Mapping[str, str] | None = None) -> Obj:
    """A Service: ClusterIP (dual-stack with two IPs), headless, or ExternalName."""
    spec: Obj = {"ports": [{"name": n, "port": p, "protocol": proto, "targetPort": p} if n else
                           {"port": p, "protocol": proto, "targetPort": p} for n, p, proto in ports]}
    if external_name is not None:
        spec.update(type="ExternalName", externalName=external_name)
    else:
        ips = ["None"] if headless else list(cluster_ips)
        families = ["IPv6" if ":" in ip else "IPv4" for ip in ips if ip != "None"] or ["IPv4"]
        spec.update(type="ClusterIP", clusterIP=ips[0], clusterIPs=ips, ipFamilies=families,
                    ipFamilyPolicy="RequireDualStack" if len(families) > 1 else "SingleStack",
                    sessionAffinity="None")
    if publish_not_ready:
        spec["publishNotReadyAddresses"] = True
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec,
            "status": {"loadBalancer": {}}}


def endpoint_slice(namespace: str, name: str, service_name: str | None, endpoints: Iterable[Mapping[str, Any]],
                   *, ports: Iterable[PortSpec] = (("http", 8080, "TCP"),), address_type: str = "IPv4",
                   labels: Mapping[str, str] | None = None) -> Obj:
    """An EndpointSlice; each endpoint is {"ip", and optionally "hostname", "ready", "pod", "node"}."""
    meta: Obj = {"name": name, "namespace": namespace,
                 "labels": {**({"kubernetes.io/service-name": service_name} if service_name else {}),
                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                            **(labels or {})}}
    eps = []
    for ep in endpoints:
        entry: Obj = {"addresses": list(ep["addresses"]) if "addresses" in ep else [ep["ip"]],
                      "conditions": {"ready": ep.get("ready", True), "serving": ep.get("ready", True),
                                     "terminating": False}}
        if ep.get("hostname"):
            entry["hostname"] = ep["hostname"]
        if ep.get("pod"):
            entry["targetRef"] = {"kind": "Pod", "name": ep["pod"], "namespace": namespace}
        if ep.get("node"):
            entry["nodeName"] = ep["node"]
        eps.append(entry)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
            "addressType": address_type, "endpoints": eps,
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports]}


def pod(namespace: str, name: str, ip: str, *, terminating: bool = False,
        labels: Mapping[str, str] | None = None) -> Obj:
    """A running Pod with ``ip`` (or one being deleted)."""
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    if terminating:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    status: Obj = {"phase": "Running"}
    if ip:
        status.update(podIP=ip, podIPs=[{"ip": ip}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}, "status": status}


def as_list(objects: Iterable[Obj]) -> Obj:
    """Objects as one ``kind: List`` document, the shape ``kubectl get a,b -o yaml`` prints."""
    return {"apiVersion": "v1", "items": list(objects), "kind": "List", "metadata": {"resourceVersion": ""}}


def write_snapshot(path: Path, objects: Iterable[Obj]) -> Path:
    """A snapshot file for the kubernetes plugin's ``snapshot``: the objects as one List,
    written to a temporary file and renamed into place (a server polling it never sees half)."""
    write_atomically(path, yaml.safe_dump(as_list(objects), sort_keys=True), fsync=False)
    return path


def write_kubeconfig(path: str | Path, fakes: Mapping[str, FakeKube], current: str | None = None) -> Path:
    """A kubeconfig with one context (and cluster and user) per fake, named by the mapping's keys."""
    names = list(fakes)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current or names[0],
        "clusters": [{"name": n, "cluster": _cluster_entry(fakes[n])} for n in names],
        "users": [{"name": n, "user": {"token": fakes[n].token}} for n in names],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in names],
    }
    target = Path(path)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


def unreachable_kubeconfig(path: str | Path, port: int) -> Path:
    """A kubeconfig whose API is ``http://127.0.0.1:PORT``, where nothing is to listen (a free
    port): a cluster that never syncs."""
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "gone",
              "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
              "users": [{"name": "gone", "user": {"token": "t"}}],
              "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "gone"}}]}
    target = Path(path)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


def _cluster_entry(fake: FakeKube) -> Obj:
    entry: Obj = {"server": fake.url}
    if fake.tls:
        entry["certificate-authority-data"] = base64.b64encode(fake.ca_cert.read_bytes()).decode()
    return entry


@contextlib.contextmanager
def serving_in_thread(*fakes: FakeKube) -> Iterator[None]:
    """Serve ``fakes`` from an event loop in a background thread while the block runs.

    Fill the stores before entering: the server thread reads them without locks.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fakekube", daemon=True)
    thread.start()
    started: list[FakeKube] = []
    try:
        for fake in fakes:
            asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=30)
            started.append(fake)
        yield
    finally:
        for fake in started:
            asyncio.run_coroutine_threadsafe(fake.close(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
