"""TLS for interkube: certificates for clusters, server contexts with CoreDNS's client_auth modes,
certificate files re-read when they change, and the server side of DNS over TLS.

* :mod:`interkube.tlsutil.certs` - a CA and server/client certificates (``interkube certs``, tests).
* :mod:`interkube.tlsutil.contexts` - server SSL contexts; CoreDNS's five client_auth modes.
* :mod:`interkube.tlsutil.watch` - polling certificate files and rebuilding contexts on change.
* :mod:`interkube.tlsutil.stream` - the TLS layer under the DNS-over-TLS listener.
* :mod:`interkube.tlsutil.reasons` - why a handshake failed, in words fit for a log line.
"""
