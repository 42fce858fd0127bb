"""Shared helpers below the plugins: argument parsing, fallthrough, file polling and tickers, backoff,
length framing, metric names, typed shared objects (as CoreDNS's plugin/pkg)."""
