"""Wire `prometheus`: one process-wide store, kept across reloads so counters never go back."""

from interkube.plugin.http import endpoint
from interkube.plugin.setup import SetupContext
from interkube.plugins.prometheus.handler import PrometheusHandler
from interkube.plugins.prometheus.parse import PrometheusConfig
from interkube.plugins.prometheus.store import DNS_METRICS, DnsMetrics


def _store(ctx: SetupContext) -> DnsMetrics:
    def make() -> DnsMetrics:
        store = DnsMetrics()
        ctx.services.metrics.add_source(store, store.collect)
        return store
    return ctx.services.shared.get_or_create(DNS_METRICS, None, make)


def setup(cfg: PrometheusConfig, ctx: SetupContext) -> PrometheusHandler:
    handler = PrometheusHandler(_store(ctx), endpoint(ctx.services, cfg.address, 9153, ctx),
                                ctx.services.metrics, ctx.services.worker)
    ctx.on_startup(handler.start)
    ctx.on_shutdown(handler.stop)
    return handler
