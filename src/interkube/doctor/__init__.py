"""``interkube doctor``: checks a real setup (plan, Corefile, upstreams, clusters, webhook, proxy,
readiness, and a probe from a pod's network namespace) and reports findings (docs/doctor.md)."""
