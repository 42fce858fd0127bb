"""Wire `prometheus`: one process-wide store, kept across reloads so counters never go back."""

from interkube.plugins.prometheus.handler import PrometheusHandler
from interkube.plugins.prometheus.parse import PrometheusConfig
from interkube.plugins.prometheus.store import DnsMetrics
from interkube.server.http import endpoint
from interkube.server.plugin import SetupContext


def _store(ctx: SetupContext) -> DnsMetrics:
    def make() -> DnsMetrics:
        store = DnsMetrics()
        ctx.services.metrics.add_source(store, store.collect)
        return store
    return ctx.services.share("prometheus:dns", make)


def setup(cfg: PrometheusConfig, ctx: SetupContext) -> PrometheusHandler:
    return PrometheusHandler(_store(ctx), endpoint(ctx.services, cfg.address, 9153, ctx), ctx.services.metrics,
                             ctx.services.worker)
