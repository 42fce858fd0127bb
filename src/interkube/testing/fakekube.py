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

What it does not fake (yet): watch streams, writes, field selectors, RBAC. Requests for them get
a 400 Status saying so rather than a wrong answer. Handlers are looked up by verb in
:attr:`FakeKube.handlers`, so watch support (chunked streams, bookmarks, 410 Gone, dropped
connections, stalls) can be added as one more verb with its own handler and event log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

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

Handler = Callable[[web.Request, ResourceType, "str | None", "str | None"], Awaitable[web.Response]]


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    # Exactly "application/json", as kube-apiserver sends it: lightkube only turns a failed
    # response into ApiError when the content type matches to the letter.
    return web.Response(status=code, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


def _json(data: Any) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})


def _label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Equality-based selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, joined by commas."""
    tests: list[Callable[[Mapping[str, str]], bool]] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda labels, k=term[1:].strip(): k not in labels)
        elif " in " in term or " notin " in term:
            raise ValueError(f"set-based selector {term!r} is not supported by this fake")
        else:
            tests.append(lambda labels, k=term: k in labels)
    return lambda labels: all(test(labels) for test in tests)


class FakeKube:
    """An in-memory API server; ``async with FakeKube() as kube:`` serves it on 127.0.0.1."""

    def __init__(self, *, token: str = "fake-token", types: Iterable[ResourceType] = DEFAULT_TYPES,
                 not_served: Iterable[ResourceType] = (), forbidden: Iterable[ResourceType] = ()) -> None:
        self.token = token
        hidden = set(not_served)
        self.types = {(t.group_version, t.plural): t for t in types if t not in hidden}
        # Served, but RBAC refuses every request for them (403), as for a user without the role.
        self.forbidden = set(forbidden)
        self.store: dict[tuple[str, str, str | None, str], Obj] = {}
        self.resource_version = 0
        self._uids = itertools.count(1)
        self.handlers: dict[str, Handler] = {"list": self._list, "get": self._get}
        self.requests: list[str] = []  # "GET /api/v1/nodes?..." in order, for assertions
        self._runner: web.AppRunner | None = None
        self.url = ""

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
        self.store[(rtype.group_version, rtype.plural, namespace, meta["name"])] = obj
        return obj

    def add_all(self, objs: Iterable[Obj]) -> None:
        for obj in objs:
            self.add(obj)

    def delete(self, obj: Mapping[str, Any]) -> None:
        rtype = self._type_of(obj)
        meta = obj["metadata"]
        self.store.pop((rtype.group_version, rtype.plural,
                        meta.get("namespace") if rtype.namespaced else None, meta["name"]))
        self.resource_version += 1

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
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeKube:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

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

    async def _resource(self, request: web.Request) -> web.Response:
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
        if rtype in self.forbidden:
            return _status(403, "Forbidden", f'{plural}.{rtype.group or "core"} is forbidden: '
                                             'User "fake" cannot list or get it')
        if request.query.get("watch") in ("true", "1"):
            verb = "watch"
        else:
            verb = "get" if name is not None else "list"
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
        limit = int(request.query.get("limit") or 0)
        if limit > 0 and offset + limit < len(items):
            token = {"offset": offset + limit, "rv": metadata["resourceVersion"]}
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            items = items[offset:offset + limit]
        else:
            items = items[offset:]
        return _json({"kind": f"{rtype.kind}List", "apiVersion": rtype.group_version,
                      "metadata": metadata, "items": items})


def write_kubeconfig(path: str | Path, fakes: Mapping[str, FakeKube], current: str | None = None) -> Path:
    """A kubeconfig with one context (and cluster and user) per fake, named by the mapping's keys."""
    names = list(fakes)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current or names[0],
        "clusters": [{"name": n, "cluster": {"server": fakes[n].url}} for n in names],
        "users": [{"name": n, "user": {"token": fakes[n].token}} for n in names],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in names],
    }
    target = Path(path)
    target.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return target


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
