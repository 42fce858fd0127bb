"""The calls the controller makes to the target cluster's API: Services, Namespaces, a Lease.

Through the HTTP client :mod:`interkube.kube.access` builds from the kubeconfig (lightkube's
authentication and TLS), with JSON bodies: the controller reads a handful of fields and writes
whole small objects, so typed models would only cost time on 5,000-object lists.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from interkube.errors import KubeError, KubeForbidden
from interkube.kube import access as api_access

SERVICES = "/api/v1/services"
LEASES = "/apis/coordination.k8s.io/v1"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class ApiFailure(KubeError):
    """The API answered a call with an error status."""

    def __init__(self, message: str, status: int, reason: str = "", details_kind: str = "",
                 cluster: str | None = None, context: str | None = None) -> None:
        self.status = status
        self.reason = reason
        self.details_kind = details_kind
        super().__init__(message, cluster=cluster, context=context)

    @property
    def missing_namespace(self) -> bool:
        """A create refused because the namespace does not exist."""
        return self.status == 404 and self.details_kind == "namespaces"


class Forbidden(ApiFailure, KubeForbidden):
    """RBAC refused the call."""


def _service_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/services"
    return f"{base}/{name}" if name is not None else base


class TargetApi:
    """One cluster's API, for the calls the controller needs."""

    def __init__(self, config: api_access.ApiConfig, *, cluster: str, context: str | None,
                 timeout: float = 30.0) -> None:
        self.config = config
        self.cluster = cluster
        self.context = context
        self.server = config.cluster.server
        self._client = api_access.http_client(config, timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- plumbing -------------------------------------------------------------------------

    def _failure(self, resp: httpx2.Response, what: str) -> ApiFailure:
        try:
            status = json.loads(resp.content)
        except ValueError:
            status = {}
        if not isinstance(status, dict):
            status = {}
        message = str(status.get("message") or resp.text[:200].strip() or resp.reason_phrase)
        details = status.get("details")
        if not isinstance(details, dict):
            details = {}
        cls = Forbidden if resp.status_code == 403 else ApiFailure
        return cls(f"{what}: HTTP {resp.status_code}: {message}", resp.status_code, str(status.get("reason") or ""),
                   str(details.get("kind") or ""), cluster=self.cluster, context=self.context)

    async def _call(self, method: str, path: str, what: str, *, ok: tuple[int, ...] = (200, 201),
                    body: Any = None, params: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None) -> dict[str, Any]:
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})} if content is not None else None
        resp = await self._client.request(method, path, content=content, params=params, headers=all_headers)
        if resp.status_code not in ok:
            raise self._failure(resp, what)
        if not resp.content:
            return {}
        doc = json.loads(resp.content)
        return doc if isinstance(doc, dict) else {}

    # --- Services -------------------------------------------------------------------------

    async def list_services(self, namespace: str | None = None, page_size: int = 500,
                            selector: str = "") -> AsyncIterator[dict[str, Any]]:
        """Every Service (of ``namespace``, matching ``selector``), page by page."""
        path = _service_path(namespace) if namespace else SERVICES
        params = {"limit": str(page_size)}
        if selector:
            params["labelSelector"] = selector
        while True:
            doc = await self._call("GET", path, "list services", ok=(200,), params=params)
            for item in doc.get("items") or ():
                yield item
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    async def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", _service_path(namespace, name), f"get service {namespace}/{name}",
                                    ok=(200,))
        except ApiFailure as exc:
            if exc.status == 404:
                return None
            raise

    async def create_service(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        return await self._call("POST", _service_path(meta["namespace"]),
                                f"create service {meta['namespace']}/{meta['name']}", body=body)

    async def patch_service(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", _service_path(namespace, name), f"update service {namespace}/{name}",
                                ok=(200,), body=patch, headers=MERGE_PATCH)

    async def delete_service(self, namespace: str, name: str, uid: str, resource_version: str) -> None:
        """Delete the Service only if it is still the object we read (a person's Service made in
        its place since is left alone); a Service already gone is no error."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions",
                   "preconditions": {"uid": uid, "resourceVersion": resource_version}}
        await self._call("DELETE", _service_path(namespace, name), f"delete service {namespace}/{name}",
                         ok=(200, 202, 404), body=options)

    # --- Namespaces -----------------------------------------------------------------------

    async def create_namespace(self, name: str, labels: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        await self._call("POST", "/api/v1/namespaces", f"create namespace {name}", ok=(201, 409), body=body)

    # --- Leases ---------------------------------------------------------------------------

    def _lease_path(self, namespace: str, name: str | None = None) -> str:
        base = f"{LEASES}/namespaces/{namespace}/leases"
        return f"{base}/{name}" if name is not None else base

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", self._lease_path(namespace, name), f"get lease {namespace}/{name}",
                                    ok=(200,))
        except ApiFailure as exc:
            if exc.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", self._lease_path(namespace), f"create lease {namespace}", ok=(201,),
                                body=body)

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with the resourceVersion read: refused (409) if another replica wrote it since."""
        return await self._call("PUT", self._lease_path(namespace, name), f"update lease {namespace}/{name}",
                                ok=(200,), body=body)
