"""One cluster for the splitdns tests: a database's headless Service and its servers' endpoints.

Namespace ``shop``: ``db-headless`` (headless) with ``db-0`` ready on both families, ``db-1``
ready on IPv4 only and ``db-2`` not ready; ``web``, a ClusterIP Service; ``ext``, an
ExternalName. The public DNS (a fake upstream) has every server's public address.
"""

from __future__ import annotations

from typing import Any

from testkit.fakekube import endpoint_slice, service

Obj = dict[str, Any]

POD_IPS = {"db-0": "10.244.1.10", "db-1": "10.244.1.11", "db-2": "10.244.1.12"}
PUBLIC = {f"db-{i}.db.example.com.": f"203.0.113.{i}" for i in range(6)}


def objects(db2_ready: bool = False) -> list[Obj]:
    return [
        service("shop", "db-headless", headless=True, ports=[("db", 2113, "TCP")]),
        endpoint_slice("shop", "db-headless-v4", "db-headless",
                       [{"ip": POD_IPS["db-0"], "hostname": "db-0"}, {"ip": POD_IPS["db-1"], "hostname": "db-1"},
                        {"ip": POD_IPS["db-2"], "hostname": "db-2", "ready": db2_ready}],
                       ports=[("db", 2113, "TCP")]),
        endpoint_slice("shop", "db-headless-v6", "db-headless", [{"ip": "fd00::10", "hostname": "db-0"}],
                       ports=[("db", 2113, "TCP")], address_type="IPv6"),
        service("shop", "web", cluster_ips=["10.96.1.10"]),
        service("shop", "ext", external_name="db-0.db-headless.shop.svc.cluster.local"),
    ]


def public_records() -> dict[tuple[str, str], list[str]]:
    """The public DNS's records: an address and a TXT record per server, and one more name."""
    out: dict[tuple[str, str], list[str]] = {(name, "A"): [ip] for name, ip in PUBLIC.items()}
    out.update({(name, "TXT"): ['"public"'] for name in PUBLIC})
    out[("www.db.example.com.", "A")] = ["203.0.113.80"]
    return out
