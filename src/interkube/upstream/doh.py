"""Queries to one DNS-over-HTTPS upstream (RFC 8484): POST (or GET) to ``/dns-query`` over HTTP/2.

HTTP/2 comes from httpx2 with h2 (``http2=True``): httpx2 is already what interkube talks to
the Kubernetes API with (through lightkube), and h2 is the maintained HTTP/2 protocol library
it builds on. aiohttp, the other HTTP library interkube uses, has no HTTP/2 client. httpx2's
pool keeps one HTTP/2 connection per upstream and runs every query on it as a stream of its
own, so concurrent queries share one TLS session (as CoreDNS's Go HTTP/2 transport does); a
connection idle for ``expire`` is closed, and with ``max_age`` a connection that old is
replaced by a fresh one.

As in CoreDNS, the query goes out with ID 0 (RFC 8484 section 4.1: it makes answers cacheable
by HTTP caches); the answer is accepted only when its status is 200 and its question is the
query's, and the caller puts the client's ID back.

The client's TLS context is its own (not the DoT upstreams'): httpx2 sets the ALPN protocols
(h2, http/1.1) on the context it is given, which a DoT server could refuse.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from interkube.dns.wire import HEADER_LEN
from interkube.errors import TlsVerificationFailed, UpstreamError, UpstreamRefused, UpstreamTimeout
from interkube.tlsutil import reasons
from interkube.upstream.transport import question_key

if TYPE_CHECKING:
    # Imported where an https:// upstream uses them: a server without one (forward's plain UDP
    # and TCP, a sidecar) does not load httpx2, h2 and certifi, nor ssl (issue 18, footprint).
    import ssl

    import httpx2

#: RFC 8484's media type, and the path CoreDNS uses (no other path can be configured).
MEDIA_TYPE = "application/dns-message"
PATH = "/dns-query"
METHODS = ("POST", "GET")
#: The largest answer read (a DNS message cannot be longer).
MAX_ANSWER = 65535

log = logging.getLogger("interkube.upstream")


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error an httpx2 error wraps, if any."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, reasons.tls_errors()):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _refused(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class DohExchanger:
    """Queries to one DoH upstream, on one reused HTTP/2 connection.

    ``host``/``port`` is where to connect; ``server_name`` the name the certificate is verified
    against and sent as SNI and as the request's Host (``%NAME`` or ``tls_servername``), else
    the address itself.
    """

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext, server_name: str | None = None,
                 method: str = "POST", expire: float = 10.0, max_age: float = 0.0, max_idle_conns: int = 0,
                 source_address: str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"DoH method must be {' or '.join(METHODS)}, not {method!r}")
        self.host = host
        self.port = port
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.name = f"https://{netloc}"
        self.url = f"https://{netloc}{PATH}"
        self.server_name = server_name
        self.method = method
        self.expire = expire
        self.max_age = max_age
        self.max_idle_conns = max_idle_conns
        self.source_address = source_address
        self._clock = clock
        self._headers = [(b"accept", MEDIA_TYPE.encode())]
        if server_name:
            self._headers.append((b"host", server_name.encode()))
        self._extensions = {"sni_hostname": server_name} if server_name else {}
        self._closed = False
        #: Transports replaced (a new TLS context, max_age) and closed once their queries are done.
        self._retired: set[asyncio.Task[None]] = set()
        self._context = ssl_context
        self._transport = self._new_transport()
        self._born: float | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _new_transport(self) -> httpx2.AsyncHTTPTransport:
        # trust_env=False: no proxy from the environment (HTTPS_PROXY, NO_PROXY) may reroute
        # queries meant for the upstream; http1=False: HTTP/2 or nothing, as RFC 8484 advises.
        import httpx2

        limits = httpx2.Limits(max_connections=None,
                               max_keepalive_connections=self.max_idle_conns or None,
                               keepalive_expiry=self.expire)
        return httpx2.AsyncHTTPTransport(verify=self._context, http2=True, http1=False, trust_env=False,
                                         limits=limits, local_address=self.source_address, retries=0)

    def use_ssl_context(self, ctx: ssl.SSLContext) -> None:
        """New client TLS settings (a renewed certificate): used by the next connection; the
        open one finishes the queries it carries."""
        self._context = ctx
        self._replace()

    def _replace(self) -> None:
        old, self._transport = self._transport, self._new_transport()
        self._born = None
        self._retire(old)

    def _retire(self, transport: httpx2.AsyncHTTPTransport) -> None:
        """Close ``transport`` once the queries on it can no longer be waiting (5 s: a query's
        whole budget in forward)."""
        async def close_later() -> None:
            await asyncio.sleep(5.0)
            await transport.aclose()

        task = asyncio.get_running_loop().create_task(close_later())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def _request(self, wire: bytes) -> httpx2.Request:
        import httpx2

        query = b"\x00\x00" + wire[2:]  # ID 0 (RFC 8484 section 4.1)
        if self.method == "GET":
            dns_param = base64.urlsafe_b64encode(query).rstrip(b"=").decode()
            return httpx2.Request("GET", self.url, params={"dns": dns_param}, headers=self._headers,
                                  extensions=self._extensions)
        return httpx2.Request("POST", self.url, content=query,
                              headers=[*self._headers, (b"content-type", MEDIA_TYPE.encode())],
                              extensions=self._extensions)

    async def exchange(self, wire: bytes, timeout: float, question: bytes | None = None) -> bytes:
        """Send ``wire`` and return the answer (with ID 0), within ``timeout`` seconds; ``question``
        is the lower-cased question section the answer must repeat (read from ``wire`` without it)."""
        import httpx2

        if self._closed:
            raise UpstreamError(self.name, "the connections to this upstream are closed (shutting down)")
        if self.max_age > 0:
            now = self._now()
            if self._born is None:
                self._born = now
            elif now - self._born >= self.max_age:
                self._replace()
                self._born = now
        transport = self._transport
        try:
            async with asyncio.timeout(timeout):
                resp = await transport.handle_async_request(self._request(wire))
                try:
                    body = await resp.aread()
                finally:
                    await resp.aclose()
        except TimeoutError:
            raise UpstreamTimeout(self.name, f"no answer in {timeout:g}s") from None
        except httpx2.HTTPError as exc:
            raise self._failure(exc) from exc
        if resp.status_code != 200:
            raise UpstreamError(self.name, f"HTTP status {resp.status_code} (expected 200)")
        if len(body) < HEADER_LEN or len(body) > MAX_ANSWER or not body[2] & 0x80:
            raise UpstreamError(self.name, f"the HTTP answer is not a DNS response ({len(body)} bytes)")
        if question is None:
            question = question_key(wire)
        if question and body[HEADER_LEN:HEADER_LEN + len(question)].lower() != question:
            raise UpstreamError(self.name, "the answer is for another question")
        return body

    def _failure(self, exc: httpx2.HTTPError) -> UpstreamError:
        import httpx2

        tls_error = _ssl_cause(exc)
        if tls_error is not None:
            return TlsVerificationFailed(self.name, reasons.client_side(tls_error, self.server_name or self.host))
        if _refused(exc):
            return UpstreamRefused(self.name, "connection refused")
        if isinstance(exc, httpx2.TimeoutException):
            return UpstreamTimeout(self.name, f"timed out ({type(exc).__name__})")
        return UpstreamError(self.name, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def close(self) -> None:
        """Stop: close the connections now (forward's shutdown; queries in flight fail)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._retired):
            task.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop any more: the sockets go with the process
        closing = loop.create_task(self._transport.aclose())
        self._retired.add(closing)
        closing.add_done_callback(self._retired.discard)
