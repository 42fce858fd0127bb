"""The DNS-over-HTTPS listener of https:// server blocks (RFC 8484), as CoreDNS serves them.

Queries come to the path ``/dns-query`` (any other path: 404), as POST bodies or GET ``?dns=``
parameters (base64url without padding); other methods and unreadable queries get 400, a query
the chain drops (acl) 500. The answer is ``application/dns-message`` with a ``cache-control:
max-age`` of its smallest TTL (CoreDNS's rule: 5 seconds for errors and empty answers, at most an
hour). Queries run through the server block's chain as DNS-over-TCP queries do (``proto`` is
"tcp", as CoreDNS's DoH requests are): answers from memory within the socket callback, others on
the slow path; nothing is truncated.

HTTP/2 (ALPN ``h2``, or a cleartext client's connection preface) runs every query as a stream
of one connection, answered as each completes, through h2 (the maintained sans-I/O HTTP/2
library, which the forward plugin's DoH client also rests on); HTTP/1.1 (ALPN ``http/1.1``, or
none) through h11, one request after another on a kept-alive connection. With a `tls`
directive the connection is TLS (interkube's own layer, as for tls:// blocks: the handshake is
refused with an alert and a log line, certificates follow rotation); without one, as in
CoreDNS, the block speaks cleartext HTTP (for a proxy in front that ends TLS).

Every connection holds a slot in the process's connection table from accept (TLS handshakes
included), like the DNS-over-TCP/TLS ones: the cap, the per-client limit, eviction of the idle,
and the idle timeout (only a whole request counts as activity) apply alike.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11

from interkube.dns.reader import Malformed, Walk
from interkube.dns.wire import FLAG_QR, HEADER_LEN, parse_query
from interkube.plugin.request import Request
from interkube.server.limits import TableSlot

if TYPE_CHECKING:
    from interkube.server.listeners import Listener

log = logging.getLogger("interkube.server")

PATH = "/dns-query"
MEDIA_TYPE = b"application/dns-message"
#: The largest query accepted (a DNS message cannot be longer), and its base64 form.
MAX_QUERY = 65536
MAX_QUERY_B64 = (MAX_QUERY * 8 + 5) // 6
#: HTTP/2 streams a client may have open at once (CoreDNS's default max_streams).
MAX_STREAMS = 250
#: CoreDNS's bounds on max-age (dnsutil.MinimalDefaultTTL, MaximumDefaultTTL).
MIN_AGE, MAX_AGE = 5, 3600
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SERVER = b"interkube"


def max_age(resp: bytes) -> int:
    """Seconds an HTTP cache may keep ``resp``: its smallest TTL (OPT aside), at most an hour;
    5 for anything but NOERROR and NXDOMAIN and for an answer without records."""
    if len(resp) < HEADER_LEN or (resp[3] & 0x0F) not in (0, 3):
        return MIN_AGE
    try:
        ttls = [ttl for _, _, _, rtype, _, ttl, _, _ in Walk(resp).records() if rtype != 41]
    except Malformed:
        return MIN_AGE
    if not ttls:
        return MIN_AGE
    return min(MAX_AGE, *ttls)


class BadRequest(Exception):
    """A request that gets an HTTP error status rather than a DNS answer."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def query_of(method: str, target: str, body: bytes) -> bytes:
    """The DNS query an HTTP request carries; raises BadRequest with the status to answer."""
    url = urlsplit(target)
    if url.path != PATH:
        raise BadRequest(404, "not found")
    if method == "GET":
        values = parse_qs(url.query, keep_blank_values=True).get("dns")
        if not values:
            raise BadRequest(400, "no 'dns' query parameter found")
        if len(values) != 1:
            raise BadRequest(400, "multiple 'dns' query values found")
        b64 = values[0]
        if len(b64) > MAX_QUERY_B64:
            raise BadRequest(400, "dns query too large")
        try:
            wire = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        except (binascii.Error, ValueError):
            raise BadRequest(400, "the 'dns' parameter is not base64url") from None
    elif method == "POST":
        wire = body
    else:
        raise BadRequest(400, f"method not allowed: {method}")
    if len(wire) < HEADER_LEN or wire[2] & (FLAG_QR >> 8):
        raise BadRequest(400, "not a DNS query")
    return wire


class _Stream:
    """One HTTP/2 request: its method, target and body as they arrive."""

    __slots__ = ("method", "target", "body", "out", "task")

    def __init__(self, method: str, target: str) -> None:
        self.method = method
        self.target = target
        self.body = bytearray()
        self.out: bytes | None = None        # response bytes still to send (flow control)
        self.task: asyncio.Task[None] | None = None


class DohConnection(TableSlot, asyncio.Protocol):
    """One HTTP connection of a DoH listener (after TLS, if any): HTTP/2 or HTTP/1.1."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.table = listener.options.table
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.raw: asyncio.BaseTransport | None = None
        self.peer: Any = None
        self.client = ""
        self.admitted = False
        self.last_query = 0.0
        self.active = 0.0
        self.inflight: set[asyncio.Task[None]] = set()
        self.h2: h2.connection.H2Connection | None = None
        self.h11: h11.Connection | None = None
        self.streams: dict[int, _Stream] = {}
        self._sniff = b""                     # cleartext: the first bytes, until the protocol is known
        self._http1_busy = False              # an HTTP/1.1 request is being answered
        self._timer: asyncio.TimerHandle | None = None
        self.eof = False

    # -- the slot (interkube.server.limits.TableSlot) ---------------------------------------------

    def is_idle(self) -> bool:
        return not self.inflight

    def close(self, reason: str | None = None) -> None:
        t = self.transport or self.raw
        if t is None or t.is_closing():
            return
        if reason is not None:
            self.count_close(reason)
        if self.h2 is not None and self.transport is not None:
            try:
                self.h2.close_connection()
                self.transport.write(self.h2.data_to_send())
            except h2.exceptions.ProtocolError:
                pass
        t.close()

    # -- lifecycle --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream's; uvloop's is no asyncio.Transport
        if not self.admitted and not self.admit(transport):
            transport.close()
            return
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            if sslobj.selected_alpn_protocol() == "h2":
                self._start_h2()
            else:
                self.h11 = h11.Connection(h11.SERVER)
        self.active = self._loop.time()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self.inflight):
            task.cancel()
        self.transport = None

    def eof_received(self) -> bool:
        """The client sent all it will: answers still owed are sent, then the connection closes."""
        self.eof = True
        return bool(self.inflight)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_at(self.active + self.listener.options.tcp_idle_timeout, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        idle_at = self.active + self.listener.options.tcp_idle_timeout
        if self._loop.time() + 0.001 >= idle_at and not self.inflight:
            self.close("idle")
            return
        self._timer = self._loop.call_at(max(idle_at, self._loop.time() + 0.05), self._tick)

    def _touch(self) -> None:
        """A whole request came: the connection is active (only those count, not stray bytes)."""
        self.active = self.last_query = self._loop.time()
        if self.admitted:
            self.table.touch(self)

    # -- input ------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.h2 is not None:
            self._h2_data(data)
        elif self.h11 is not None:
            self._h11_data(data)
        else:
            # Cleartext: HTTP/2 with prior knowledge starts with its preface, else HTTP/1.1.
            self._sniff += data
            if self._sniff[:len(_H2_PREFACE)] == _H2_PREFACE[:len(self._sniff)] and len(self._sniff) < len(_H2_PREFACE):
                return
            data, self._sniff = self._sniff, b""
            if data.startswith(_H2_PREFACE):
                self._start_h2()
                self._h2_data(data)
            else:
                self.h11 = h11.Connection(h11.SERVER)
                self._h11_data(data)

    def _handle(self, method: str, target: str, body: bytes,
                reply: Callable[[int, bytes, list[tuple[bytes, bytes]]], None]) -> asyncio.Task[None] | None:
        """Answer one request through ``reply(status, body, headers)``: at once, or from a task
        (returned) when the chain takes the slow path."""
        self._touch()
        try:
            wire = query_of(method, target, body)
        except BadRequest as exc:
            reply(exc.status, f"{exc}\n".encode(), [(b"content-type", b"text/plain; charset=utf-8")])
            return None
        dispatcher = self.listener.dispatcher
        q = parse_query(wire)
        answer: Coroutine[Any, Any, bytes | None]
        if q is not None:
            req = Request(wire, q, self.peer, "tcp")
            resp = dispatcher.fast(req)
            if resp is not None:
                self._reply_dns(resp, reply)
                return None
            answer = dispatcher.serve(req)
        else:
            answer = dispatcher.serve_unparsed(wire, self.peer, "tcp")
        task = self._loop.create_task(self._slow(answer, reply))
        self.inflight.add(task)
        task.add_done_callback(self._done)
        return task

    async def _slow(self, answer: Coroutine[Any, Any, bytes | None],
                    reply: Callable[[int, bytes, list[tuple[bytes, bytes]]], None]) -> None:
        self._reply_dns(await answer, reply)

    def _reply_dns(self, resp: bytes | None,
                   reply: Callable[[int, bytes, list[tuple[bytes, bytes]]], None]) -> None:
        if not resp:
            # RFC 8484 section 4.2.1; CoreDNS answers 500 when the chain wrote nothing.
            reply(500, b"No response\n", [(b"content-type", b"text/plain; charset=utf-8")])
            return
        reply(200, resp, [(b"content-type", MEDIA_TYPE), (b"cache-control", f"max-age={max_age(resp)}".encode())])

    def _done(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self.active = self._loop.time()
        if self.eof and not self.inflight:
            self.close()

    # -- HTTP/2 -----------------------------------------------------------------------------------

    def _start_h2(self) -> None:
        # What we send is ours and well formed: h2 need not check and normalise it again on every
        # answer (a fifth of an answer's cost). What clients send is still checked.
        config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                           validate_outbound_headers=False, normalize_outbound_headers=False)
        conn = self.h2 = h2.connection.H2Connection(config)
        conn.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
        })
        conn.initiate_connection()
        self._h2_flush()

    def _h2_flush(self) -> None:
        assert self.h2 is not None
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _h2_data(self, data: bytes) -> None:
        conn = self.h2
        assert conn is not None
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("%s: HTTP/2 error from %s: %s", self.listener, self.client, exc)
            self._h2_flush()  # the GOAWAY h2 wrote
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                headers = dict(event.headers or [])
                stream = _Stream(headers.get(b":method", b"").decode("latin-1"),
                                 headers.get(b":path", b"").decode("latin-1"))
                self.streams[event.stream_id] = stream
                if event.stream_ended is not None:
                    self._h2_request(event.stream_id)
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                st = self.streams.get(event.stream_id)
                if st is not None and event.data:
                    if len(st.body) + len(event.data) > MAX_QUERY:
                        self._h2_reset(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                    else:
                        st.body += event.data
                if event.stream_ended is not None:
                    self._h2_request(event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._h2_request(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                st = self.streams.pop(event.stream_id, None)
                if st is not None and st.task is not None:
                    st.task.cancel()
            elif isinstance(event, h2.events.WindowUpdated):
                self._h2_send_pending()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._h2_flush()
                if self.transport is not None:
                    self.transport.close()
                return
        self._h2_flush()

    def _h2_reset(self, stream_id: int, code: int) -> None:
        assert self.h2 is not None
        self.streams.pop(stream_id, None)
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.ProtocolError:
            pass

    def _h2_request(self, stream_id: int) -> None:
        st = self.streams.get(stream_id)
        if st is None or st.task is not None or st.out is not None:
            return  # reset, or already being answered (a StreamEnded after the data's end flag)

        def reply(status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
            self._h2_reply(stream_id, status, body, headers)

        st.task = self._handle(st.method, st.target, bytes(st.body), reply)

    def _h2_reply(self, stream_id: int, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        conn = self.h2
        st = self.streams.get(stream_id)
        if conn is None or st is None or self.transport is None:
            return  # the client reset the stream, or the connection is gone
        st.task = None
        try:
            conn.send_headers(stream_id, [(b":status", str(status).encode()), *headers,
                                          (b"content-length", str(len(body)).encode()), (b"server", _SERVER)])
        except h2.exceptions.ProtocolError:
            self.streams.pop(stream_id, None)
            return
        st.out = body
        self._h2_send_pending()
        self._h2_flush()

    def _h2_send_pending(self) -> None:
        """Send what flow control allows of each answer; the rest waits for a WINDOW_UPDATE."""
        conn = self.h2
        assert conn is not None
        for stream_id, st in list(self.streams.items()):
            out = st.out
            if out is None:
                continue
            try:
                while out:
                    room = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
                    if room <= 0:
                        break
                    # The last chunk carries END_STREAM itself: some clients (dnsperf) read the
                    # answer from the frame that ends the stream, and an empty one loses it.
                    conn.send_data(stream_id, out[:room], end_stream=len(out) <= room)
                    out = out[room:]
                if not out:
                    del self.streams[stream_id]
                else:
                    st.out = out
            except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                self.streams.pop(stream_id, None)

    # -- HTTP/1.1 ---------------------------------------------------------------------------------

    def _h11_data(self, data: bytes) -> None:
        conn = self.h11
        assert conn is not None
        conn.receive_data(data)
        self._h11_next()

    def _h11_next(self) -> None:
        conn = self.h11
        assert conn is not None
        while not self._http1_busy and self.transport is not None:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._h11_error(exc.error_status_hint, str(exc))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._h11_method = event.method.decode("latin-1")
                self._h11_target = event.target.decode("latin-1")
                self._h11_body = bytearray()
            elif isinstance(event, h11.Data):
                self._h11_body += event.data
                if len(self._h11_body) > MAX_QUERY:
                    self._h11_error(413, "request body too large")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._http1_busy = True
                self._handle(self._h11_method, self._h11_target, bytes(self._h11_body), self._h11_reply)
            elif isinstance(event, h11.ConnectionClosed):
                if self.transport is not None and not self.inflight:
                    self.transport.close()
                return

    def _h11_reply(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        conn = self.h11
        t = self.transport
        if conn is None or t is None or t.is_closing():
            return
        try:
            out = conn.send(h11.Response(status_code=status, headers=[
                *headers, (b"content-length", str(len(body)).encode()), (b"server", _SERVER)]))
            out = (out or b"") + (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            t.close()
            return
        t.write(out)
        self._http1_busy = False
        if conn.our_state is h11.MUST_CLOSE:
            t.close()
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._h11_next()

    def _h11_error(self, status: int, text: str) -> None:
        conn = self.h11
        t = self.transport
        if conn is None or t is None:
            return
        try:
            out = conn.send(h11.Response(status_code=status, headers=[(b"content-length", b"0"),
                                                                      (b"connection", b"close")]))
            out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
            t.write(out)
        except h11.LocalProtocolError:
            pass
        log.debug("%s: HTTP/1.1 error from %s: %s", self.listener, self.client, text)
        t.close()


def connection_factory(listener: Listener) -> Callable[[], asyncio.Protocol]:
    """What an https:// listener accepts with: TLS when the block has a `tls` directive (the
    listener's context of the moment, so that a reload's applies to new connections), else
    cleartext HTTP."""
    from interkube.server.dot import TlsConnection  # (with ssl: a cleartext DoH listener loads neither)

    def accept() -> asyncio.Protocol:
        ctx = listener.ssl_context
        if ctx is None:
            return DohConnection(listener)
        return TlsConnection(listener, ctx, DohConnection(listener))

    return accept
