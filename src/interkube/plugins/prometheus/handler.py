"""The prometheus handler: records every answer that passes it, and serves /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from interkube.dns.wire import CLASSIC_UDP_LIMIT, RCODE_SERVFAIL, error_response
from interkube.errors import DnsError
from interkube.plugin import later
from interkube.plugin.handler import LATER, Handler, passes_later
from interkube.plugin.http import HttpEndpoint
from interkube.plugin.metrics import Metrics
from interkube.plugin.request import Request
from interkube.plugin.services import WorkerInfo
from interkube.plugins.prometheus.store import DnsMetrics


class PrometheusHandler(Handler):
    plugin = "prometheus"
    # An answer sent from the UDP answer memo is counted there, into the entry memo_tally gives
    # (see fast()): the counts are what this handler's own would have been.
    memo_safe = True

    def __init__(self, store: DnsMetrics, endpoint: HttpEndpoint, metrics: Metrics,
                 worker: WorkerInfo | None = None) -> None:
        self.worker = worker
        self.store = store
        self.endpoint = endpoint
        self.metrics = metrics
        self.record = store.record

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        resp = self.next.fast(req)
        if resp:
            self.record(req, resp)
            if req.memo is not None:
                if len(resp) <= CLASSIC_UDP_LIMIT:
                    req.memo_tally = self.store.memo_tally(req, resp)
                else:  # (the listener may cut it to the client's size: the memo counts the cut one)
                    req.memo = None
        elif resp is LATER:
            later.after(req, self._recorded)
        return resp

    def _recorded(self, req: Request, resp: bytes) -> bytes:
        if resp:
            self.record(req, resp)
        return resp

    async def serve(self, req: Request) -> bytes:
        try:
            resp = await self.next.serve(req)
        except DnsError:
            self.record(req, error_response(req.wire, RCODE_SERVFAIL, req.query))
            raise
        if resp:
            self.record(req, resp)
        return resp

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        if self.worker is not None:  # worker 0 of several: every worker's counts, summed
            body = await self.worker.gather_metrics(body)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        await self.endpoint.add("/metrics", self, self._metrics)

    async def stop(self) -> None:
        await self.endpoint.remove(self)
