"""Talking to upstream DNS servers: addresses, UDP/TCP/TLS transports, health checks.

Shared by forward and by the merge fan-out, so that both get the same pipelining, health
checking and (with TLS) the same certificate checks.
"""
