"""The contract every plugin uses: handlers, requests, setup and lifecycle hooks, answers from
memory, metrics, process services (as CoreDNS's plugin package)."""
