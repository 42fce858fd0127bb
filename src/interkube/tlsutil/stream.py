"""The TLS layer of the DNS-over-TLS listener: OpenSSL over memory BIOs, in front of the TCP protocol.

Why not ``loop.create_server(ssl=...)``: asyncio (and uvloop, which ports its code) drops a
connection whose handshake it refuses without sending the TLS alert and without a word in the
log. A TLS 1.3 client then completes its side of the handshake, sends its query, and reads a
bare EOF: it cannot tell "you need a client certificate" from a crash. Here the alert is sent
(then the write side is shut and the connection lingers briefly, so the client's in-flight
bytes do not turn our close into a reset that destroys the alert), and the refusal is logged
with its reason. The context is also taken per connection from the listener, so a reload's
new context applies to new connections while open ones carry on.

Once the handshake is done the DNS protocol (``TcpProtocol``) sees an ordinary transport.
Answers written in one event-loop pass are sealed together: a burst of pipelined answers costs
one TLS record and one send, not one each. When the client is done sending (its close_notify,
or a bare FIN) the DNS protocol's ``eof_received`` decides, as over TCP: answers still owed are
sent before our close_notify (TLS 1.3 allows the half-close, and OpenSSL writes after reading a
close_notify in 1.2 too).

The handshake has its own deadline from the accept; a subclass counts it expiring through
:meth:`TlsServerProtocol.handshake_expired`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from interkube.tlsutil import reasons

log = logging.getLogger("interkube.plugin.tls")

READ_SIZE = 65536
#: After refusing a handshake: how long to keep reading (and discarding) so that the alert is
#: not lost to a reset, before closing anyway.
LINGER = 2.0

_refusals = reasons.OncePer(60.0)


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer)


class _AppTransport(asyncio.Transport):
    """What the DNS protocol writes to: plaintext in, TLS records out."""

    def __init__(self, tls: TlsServerProtocol) -> None:
        super().__init__()
        self._tls = tls

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tls.write_plain(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self._tls.shutdown()

    def abort(self) -> None:
        self._tls.abort()

    def is_closing(self) -> bool:
        return self._tls.closing

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        if self._tls.raw is not None:
            self._tls.raw.pause_reading()

    def resume_reading(self) -> None:
        if self._tls.raw is not None:
            self._tls.raw.resume_reading()

    def is_reading(self) -> bool:
        raw = self._tls.raw
        return raw is not None and raw.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._tls.raw is not None:
            self._tls.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        raw = self._tls.raw
        return (raw.get_write_buffer_size() if raw is not None else 0) + sum(map(len, self._tls.pending))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sslobj = self._tls.sslobj
        if name == "ssl_object":
            return sslobj
        if name == "peercert":
            return sslobj.getpeercert() if sslobj is not None else default
        if name == "cipher":
            return sslobj.cipher() if sslobj is not None else default
        if name == "sslcontext":
            return sslobj.context if sslobj is not None else default
        raw = self._tls.raw
        return raw.get_extra_info(name, default) if raw is not None else default


class TlsServerProtocol(asyncio.Protocol):
    """One accepted connection: the handshake, then records to and from the ``app`` protocol."""

    def __init__(self, context: ssl.SSLContext, app: asyncio.Protocol, *, label: str = "tls",
                 handshake_timeout: float = 10.0) -> None:
        self.context = context
        self.app = app
        self.label = label
        self.handshake_timeout = handshake_timeout
        self.raw: asyncio.Transport | None = None
        self.sslobj: ssl.SSLObject | None = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.state = "handshake"   # -> "open" -> "closed", or "refused"
        self.closing = False
        self.pending: list[bytes] = []
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._app_transport: _AppTransport | None = None
        self.peer: Any = None
        self._peer_done = False  # the client has sent its close_notify or FIN
        self._keep_open = False  # ... and the app still owes answers

    # -- lifecycle ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]  # a stream's; uvloop's is no asyncio.Transport
        self.peer = transport.get_extra_info("peername")
        self.sslobj = self.context.wrap_bio(self._in, self._out, server_side=True)
        self._timer = asyncio.get_running_loop().call_later(self.handshake_timeout, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        was_open = self._app_transport is not None and self.state == "open"
        self.state = "closed"
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        self.raw = None
        if was_open:
            self.app.connection_lost(exc)

    def eof_received(self) -> bool | None:
        """A FIN from the client. Once open, the app may still owe answers: the socket stays
        open for them (the app closes it when done); otherwise close."""
        if self.state == "open" and not self.closing and self._peer_finished():
            return True
        self.shutdown()
        return None

    def _peer_finished(self) -> bool:
        """The client will send nothing more: True while the app still owes it answers."""
        if not self._peer_done:
            self._peer_done = True
            self._keep_open = bool(self.app.eof_received())
        return self._keep_open

    def _timed_out(self) -> None:
        if self.raw is None:
            return
        if self.state == "handshake":
            self.handshake_expired()
        self.raw.close()

    def handshake_expired(self) -> None:
        """The handshake was not done within its deadline; the connection closes next."""
        log.debug("%s: no TLS handshake from %s within %gs", self.label, _peer_text(self.peer),
                  self.handshake_timeout)

    # -- input --------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.state == "handshake":
            self._in.write(data)
            self._handshake()
        elif self.state == "open":
            self._in.write(data)
            self._read()
        # refused or closed: the bytes are discarded while lingering

    def _handshake(self) -> None:
        assert self.sslobj is not None
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._send_records()
            return
        except ssl.SSLError as exc:
            self._refuse(exc)
            return
        self._send_records()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.state = "open"
        self._app_transport = _AppTransport(self)
        self.app.connection_made(self._app_transport)
        if self.state == "open" and not self.closing:  # the app may refuse (connection cap)
            self._read()  # a query may have come in the same segment as the client's Finished

    def _read(self) -> None:
        assert self.sslobj is not None
        chunks = []
        peer_closed = False
        while True:
            try:
                chunk = self.sslobj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                peer_closed = True
                break
            except ssl.SSLError as exc:
                log.debug("%s: TLS error from %s: %s", self.label, _peer_text(self.peer), exc)
                self.abort()
                return
            if not chunk:
                peer_closed = True
                break
            chunks.append(chunk)
        self._send_records()  # reading may have produced records (a key update's answer)
        if chunks:
            self.app.data_received(b"".join(chunks))
        if peer_closed and not self.closing and not self._peer_finished():
            self.shutdown()

    # -- refusing -----------------------------------------------------------------------------

    def _refuse(self, exc: ssl.SSLError) -> None:
        self.state = "refused"
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
        self._send_records()  # the alert that tells the client why
        reason = reasons.server_side(exc)
        held = _refusals.allow((self.label, reason))
        if held is not None:
            more = f" ({held} more like this since the last report)" if held else ""
            log.warning("%s: refused %s: %s%s", self.label, _peer_text(self.peer), reason, more)
        raw = self.raw
        if raw is None:
            return
        if raw.can_write_eof():
            raw.write_eof()
            self._timer = asyncio.get_running_loop().call_later(LINGER, raw.close)
        else:
            raw.close()

    # -- output -------------------------------------------------------------------------------

    def write_plain(self, data: bytes) -> None:
        if self.closing or self.state != "open":
            return
        self.pending.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.pending or self.sslobj is None or self.state != "open":
            self.pending.clear()
            return
        data = b"".join(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending.clear()
        view = memoryview(data)
        try:
            while view:
                n = self.sslobj.write(view)
                view = view[n:]
        except ssl.SSLError as exc:
            log.debug("%s: TLS write to %s failed: %s", self.label, _peer_text(self.peer), exc)
            self.abort()
            return
        self._send_records()

    def _send_records(self) -> None:
        data = self._out.read()
        if data and self.raw is not None and not self.raw.is_closing():
            self.raw.write(data)

    def pause_writing(self) -> None:
        if self.state == "open":
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self.state == "open":
            self.app.resume_writing()

    # -- closing ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Send what is pending and a close_notify, then close."""
        if self.closing:
            return
        self._flush()
        self.closing = True
        if self.sslobj is not None and self.state == "open":
            try:
                self.sslobj.unwrap()
            except ssl.SSLError:
                pass  # SSLWantReadError: the peer's close_notify is not awaited
            self._send_records()
        if self.raw is not None:
            self.raw.close()

    def abort(self) -> None:
        self.closing = True
        self.pending.clear()
        if self.raw is not None:
            self.raw.abort()
