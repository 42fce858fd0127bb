"""The webhook's HTTPS server: ``POST /mutate`` (admission.k8s.io/v1), health, readiness, metrics.

Two listeners on aiohttp: the HTTPS one the API server calls (``/mutate`` and
``/mutate-annotated``, see :mod:`interkube.webhook.mutate`; and ``/health``,
``/ready``, ``/metrics`` too), and an optional plain-HTTP one for the kubelet's probes and
Prometheus. The serving certificate is polled and re-read when its files change (cert-manager
renewing the Secret), without dropping a connection: see :class:`interkube.tlsutil.contexts.ServerTls`.

Answers:

* a review the webhook can read: HTTP 200 and an AdmissionReview, always ``allowed: true``
  (the webhook changes Pods, it never refuses one), with a JSONPatch when it changed the Pod;
* a body that is not an ``admission.k8s.io/v1`` AdmissionReview: HTTP 400 with one line saying
  what is wrong. The API server treats it as a failed call (the failurePolicy decides) and does
  not retry; nothing here answers 500 for bad input;
* a bug in the webhook: HTTP 500, logged with its traceback, so that the failurePolicy the
  operator chose decides (Ignore: the Pod is created unchanged; Fail: refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from cryptography import x509
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from interkube.errors import ListenerError, MalformedReview
from interkube.pkg.ticker import Ticker
from interkube.tlsutil.contexts import ServerTls
from interkube.tlsutil.watch import follower
from interkube.webhook import mutate

log = logging.getLogger("interkube.webhook")

#: The HTTP protocol offered in the TLS handshake (the API server's client also offers h2).
ALPN = ("http/1.1",)
#: Largest body read: a Pod is at most about 1.5 MB (etcd's request limit), its review a little more.
MAX_BODY = 3 * 1024 * 1024
#: Latency buckets, finer than CoreDNS's around the 5 ms goal of the admission path.
DURATION_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0)
#: Seconds between two log lines about the same kind of unexpected review (the rest are counted).
LOG_EVERY = 60.0

OUTCOME_INJECTED, OUTCOME_UNCHANGED, OUTCOME_MALFORMED, OUTCOME_ERROR = "injected", "unchanged", "malformed", "error"


class Metrics:
    """The webhook's metrics, in a registry of its own (several webhooks may share a process in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.admissions = Counter("interkube_webhook_admissions", "Admission reviews answered, by outcome "
                                  "(injected, unchanged, malformed, error) and reason.",
                                  ["outcome", "reason"], registry=self.registry)
        self.duration = Histogram("interkube_webhook_admission_duration_seconds",
                                  "Time from a review's arrival to its answer, in the webhook.",
                                  buckets=DURATION_BUCKETS, registry=self.registry)
        self.cert_reloads = Counter("interkube_webhook_certificate_reloads",
                                    "Times a changed serving certificate was loaded.", registry=self.registry)
        self.cert_expiry = Gauge("interkube_webhook_certificate_expiry_timestamp_seconds",
                                 "When the served certificate expires (Unix time).", registry=self.registry)
        # Every label pair published from the start, so that rates work from the first scrape.
        for reason in mutate.REASONS:
            self.admissions.labels(OUTCOME_INJECTED if reason == mutate.INJECTED else OUTCOME_UNCHANGED, reason)
        self.admissions.labels(OUTCOME_MALFORMED, "")
        self.admissions.labels(OUTCOME_ERROR, "")

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Throttle:
    """Says whether to log a line about ``key`` now: the first time, then once per LOG_EVERY, with
    how many were not logged in between."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, key: str) -> int | None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < LOG_EVERY:
            self._last[key] = (last[0], last[1] + 1)
            return None
        self._last[key] = (now, 0)
        return last[1] if last else 0


@dataclass(frozen=True)
class Address:
    host: str  # "" is every interface
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Webhook:
    """The server. ``start()`` binds both listeners (or raises ListenerError, starting nothing),
    ``shutdown()`` reports not-ready for ``lameduck`` seconds and then closes them."""

    def __init__(self, policy: mutate.Policy, tls: ServerTls, listen: Address, *,
                 http_listen: Address | None = None, lameduck: float = 5.0, quiet: bool = False) -> None:
        self.policy = policy
        self.tls = tls
        self.listen = listen
        self.http_listen = http_listen
        self.lameduck = lameduck
        self.quiet = quiet
        self.metrics = Metrics()
        self.ready = False
        self.port = listen.port
        self.http_port = http_listen.port if http_listen else None
        self._runners: list[web.AppRunner] = []
        self._ticker: Ticker | None = None
        self._throttle = _Throttle()
        self._update_expiry()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            https = self._app({mutate.MUTATE_PATH: self._mutate, mutate.ANNOTATED_PATH: self._mutate})
            self.port = await self._serve(https, self.listen, "https")
            if self.http_listen is not None:
                self.http_port = await self._serve(self._app({}), self.http_listen, "http")
        except BaseException:
            await self.stop()
            raise
        self._ticker = follower(self._check_certificate, name="webhook certificate")
        self._ticker.start()
        self.ready = True

    async def _serve(self, app: web.Application, where: Address, scheme: str) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, where.host or None, where.port, reuse_address=True,
                           ssl_context=self.tls.context if scheme == "https" else None)
        try:
            await site.start()
        except OSError as exc:
            raise ListenerError(f"cannot listen on {scheme}://{where}: {exc.strerror or exc}") from exc
        port: int = runner.addresses[0][1]
        return port

    def _app(self, extra: dict[str, Route]) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        for path, handler in extra.items():
            app.router.add_post(path, handler)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def shutdown(self) -> None:
        """Not ready at once (the Endpoints drop this replica), still answering for ``lameduck``
        seconds (calls already routed here), then closed."""
        self.ready = False
        if self.lameduck > 0:
            log.info("webhook: lameduck %gs", self.lameduck)
            await asyncio.sleep(self.lameduck)
        await self.stop()

    async def stop(self) -> None:
        self.ready = False
        if self._ticker is not None:
            await self._ticker.stop()
            self._ticker = None
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    # --- certificate ---------------------------------------------------------------------------

    def _check_certificate(self) -> None:
        if self.tls.check():
            self.metrics.cert_reloads.inc()
            self._update_expiry()

    def _update_expiry(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            with open(self.tls.files.cert, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            self.metrics.cert_expiry.set(cert.not_valid_after_utc.timestamp())

    # --- routes --------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="OK") if self.ready else web.Response(status=503, text="not ready")

    async def _metrics(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.exposition())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def _mutate(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            if request.content_type != "application/json":
                raise MalformedReview(f"Content-Type is {request.content_type!r}, not application/json")
            review = mutate.parse_review(await request.read())
        except MalformedReview as exc:
            self._count(OUTCOME_MALFORMED, "", started)
            # One key for every malformed body: what a client sends must not grow the throttle's table.
            self._warn("malformed", "webhook: refused a malformed AdmissionReview from %s: %s",
                       request.remote, exc)
            return web.Response(status=400, text=f"malformed AdmissionReview: {exc}\n")
        try:
            decision = mutate.decide(review.request, self.policy,
                                     require_opt_in=request.path == mutate.ANNOTATED_PATH)
            body = json.dumps(mutate.review_response(review.uid, decision.patch, decision.warnings),
                              separators=(",", ":"))
        except Exception:
            self._count(OUTCOME_ERROR, "", started)
            if (skipped := self._throttle("error")) is not None:
                log.exception("webhook: answering review %s failed%s", review.uid, _skipped(skipped))
            return web.Response(status=500, text="internal error (logged by the webhook)\n")
        self._count(OUTCOME_INJECTED if decision.injected else OUTCOME_UNCHANGED, decision.reason, started)
        self._log(decision)
        return web.Response(body=body.encode(), content_type="application/json")

    def _count(self, outcome: str, reason: str, started: float) -> None:
        self.metrics.admissions.labels(outcome, reason).inc()
        self.metrics.duration.observe(time.perf_counter() - started)

    def _log(self, decision: mutate.Decision) -> None:
        if decision.reason in (mutate.NOT_POD, mutate.NO_OBJECT, mutate.NOT_CREATE):
            # The configuration sends the webhook something it should not: worth a warning, but
            # once per kind of thing, not once per call.
            self._warn(f"{decision.reason}:{decision.detail}", "webhook: allowed %s unchanged: %s (check the "
                       "MutatingWebhookConfiguration's rules)", decision.subject, decision.detail)
        elif self.quiet:
            return
        elif decision.injected:
            log.info("webhook: injected %s: %s", decision.subject, decision.detail)
            for warning in decision.warnings:
                log.info("webhook: %s: %s", decision.subject, warning)
        else:
            log.info("webhook: unchanged %s: %s", decision.subject, decision.detail)

    def _warn(self, key: str, message: str, *args: object) -> None:
        skipped = self._throttle(key)
        if skipped is not None:
            log.warning(message + "%s", *args, _skipped(skipped))


def _skipped(count: int) -> str:
    return f" ({count} more like it since the last line)" if count else ""


async def serve_until_signalled(webhook: Webhook) -> int:
    """Serve until SIGTERM or SIGINT, then shut down with the lameduck."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await webhook.start()
    scheme_http = f", health and metrics on http://{webhook.http_listen.host or '*'}:{webhook.http_port}" \
        if webhook.http_listen else ""
    log.info("webhook: serving https://%s:%d%s%s; %s", webhook.listen.host or "*", webhook.port, mutate.MUTATE_PATH,
             scheme_http, describe(webhook.policy))
    await stop.wait()
    log.info("webhook: shutting down")
    await webhook.shutdown()
    return 0


def describe(policy: mutate.Policy) -> str:
    """The settings in one log line."""
    dns = policy.dns
    options = " ".join(n if v is None else f"{n}:{v}" for n, v in dns.options)
    return (f"nameservers {' '.join(dns.nameservers)}, searches NS.svc.{dns.cluster_domain} svc.{dns.cluster_domain} "
            f"{dns.cluster_domain}{''.join(' ' + s for s in dns.searches)}, options {options}, excluded namespaces "
            f"{' '.join(sorted(policy.excluded_namespaces))}, hostNetwork Pods "
            f"{'with ClusterFirstWithHostNet' if policy.host_network else 'left alone'}")
