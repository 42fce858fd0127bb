"""splitdns reading the test kube-apiserver (no controllers run there, so the EndpointSlices are
written as the EndpointSlice controller would): a server's name is answered with its pod's
address once the endpoint is ready, and by the public DNS (a fake upstream behind `forward`)
while it is not and once it is deleted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import dns.rdatatype
from lightkube import Client
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from testkit.fakeupstream import FakeUpstream
from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.waiting import until

Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]


def endpoint(ip: str, hostname: str, ready: bool) -> dict[str, Any]:
    return {"addresses": [ip], "hostname": hostname, "conditions": {"ready": ready}}


async def test_a_pod_becoming_ready_and_going_away(kube_api: KubeAPI, kube: KubeObjects, kube_client: Client,
                                                   kube_ns: str, serve: Serve, public: FakeUpstream) -> None:
    kube.headless_service(kube_ns, "db-headless", ports=(("db", 2113, "TCP"),))
    kube.endpoint_slice(kube_ns, "db-headless-a", service="db-headless", ports=(("db", 2113, "TCP"),),
                        addresses=[endpoint("10.244.7.10", "db-0", False)])
    k = await serve(f""".:PORT {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        kubeconfig {kube_api.kubeconfig}
        namespaces {kube_ns}
    }}
    splitdns db.example.com {{
        pod ^db-([0-9]+)\\.db\\.example\\.com\\.$ db-{{1}}.db-headless.{kube_ns}.svc.cluster.local.
    }}
    forward . {public.address}
}}
""")

    async def answer() -> list[str]:
        msg = await k.query("db-0.db.example.com", "A")
        return sorted(rd.to_text() for r in msg.answer if r.rdtype == dns.rdatatype.A for rd in r)

    async def answers(expected: list[str]) -> bool:
        return await answer() == expected

    assert await answer() == ["203.0.113.0"]  # not ready: the public address
    kube_client.patch(EndpointSlice, "db-headless-a", {"endpoints": [endpoint("10.244.7.10", "db-0", True)]},
                      namespace=kube_ns, patch_type=PatchType.MERGE)
    await until(lambda: answers(["10.244.7.10"]), "db-0 answered with its pod address once ready")
    # The pod moves (a new address) ...
    kube_client.patch(EndpointSlice, "db-headless-a", {"endpoints": [endpoint("10.244.7.11", "db-0", True)]},
                      namespace=kube_ns, patch_type=PatchType.MERGE)
    await until(lambda: answers(["10.244.7.11"]), "db-0 answered with its new address")
    # ... and goes away.
    kube_client.delete(EndpointSlice, "db-headless-a", namespace=kube_ns)
    await until(lambda: answers(["203.0.113.0"]), "db-0 answered by the public DNS once deleted")
