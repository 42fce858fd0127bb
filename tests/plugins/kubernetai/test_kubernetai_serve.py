"""kubernetai's semantics, from snapshot files: several stanzas per block, each a cluster, a
question going to the first stanza whose zones hold it, and ``fallthrough`` handing a name a
stanza does not have to the next stanza that serves it, then to the next plugin (the kubernetai
README's rules and examples)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.server.runtime import build
from testkit.fakekube import unreachable_kubeconfig
from testkit.servers import free_port

NOERROR, NXDOMAIN, SERVFAIL = dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL
Running = Any  # tests/plugins/conftest.py's Running
Serve = Callable[[str], Awaitable[Running]]


def addresses(msg: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in msg.answer if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                  for rd in rrset)


async def ask(k: Running, name: str, rdtype: str = "A") -> tuple[str, list[str]]:
    msg = await k.query(name, rdtype)
    return dns.rcode.to_text(msg.rcode()), addresses(msg)


def readiness(k: Running) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for check in k.server.instance.readiness():
        out.update(check())
    return out


async def test_each_stanza_answers_its_own_clusters_zone(serve: Serve, east: Path, west: Path) -> None:
    k = await serve(f"""cluster.east:PORT cluster.west:PORT {{
    bind 127.0.0.1
    kubernetai cluster.east {{
        snapshot {east}
    }}
    kubernetai cluster.west {{
        snapshot {west}
    }}
}}
""")
    assert await ask(k, "web.shop.svc.cluster.east") == ("NOERROR", ["10.96.1.10"])
    assert await ask(k, "web.shop.svc.cluster.west") == ("NOERROR", ["10.96.2.10"])
    assert await ask(k, "pay.shop.svc.cluster.west") == ("NOERROR", ["10.96.2.40"])
    assert await ask(k, "pay.shop.svc.cluster.east") == ("NXDOMAIN", [])  # each cluster its own zone
    assert await ask(k, "cart.shop.svc.cluster.west") == ("NXDOMAIN", [])
    # The stanzas are kubernetai's: their readiness (and logs and metrics) say so, and their
    # clusters are named after `cluster.<name>`, as kubernetes stanzas' are.
    assert readiness(k) == {"kubernetai:east": True, "kubernetai:west": True}
    handlers = [h for h in k.server.instance.built.handlers if h.plugin == "kubernetai"]
    assert [h.cluster.name for h in handlers] == ["east", "west"]


async def test_fallthrough_goes_to_the_next_stanza_of_the_zone(serve: Serve, east: Path, west: Path) -> None:
    # kubernetai's README: a local cluster and a remote one under the same domain; the local one
    # first, with `ignore empty_service` and `fallthrough`, so that a name it does not have (or
    # whose Service has no ready endpoint) is answered by the remote cluster.
    k = await serve(f""".:PORT {{
    bind 127.0.0.1
    kubernetai cluster.local {{
        snapshot {east}
        ignore empty_service
        fallthrough
    }}
    kubernetai cluster.local {{
        snapshot {west}
    }}
}}
""")
    assert await ask(k, "web.shop.svc.cluster.local") == ("NOERROR", ["10.96.1.10"])  # the first has it
    assert await ask(k, "cart.shop.svc.cluster.local") == ("NOERROR", ["10.96.1.20"])
    assert await ask(k, "pay.shop.svc.cluster.local") == ("NOERROR", ["10.96.2.40"])  # only the second
    assert await ask(k, "idle.shop.svc.cluster.local") == ("NOERROR", ["10.245.1.30"])  # empty here
    assert await ask(k, "gone.shop.svc.cluster.local") == ("NXDOMAIN", [])  # the last one's answer
    # Two stanzas of one zone from two sources, neither named: the second is local-2.
    names = [h.cluster.name for h in k.server.instance.built.handlers if h.plugin == "kubernetai"]
    assert names == ["local", "local-2"]


async def test_without_fallthrough_the_first_stanza_of_the_zone_is_final(serve: Serve, east: Path,
                                                                      west: Path) -> None:
    k = await serve(f""".:PORT {{
    bind 127.0.0.1
    kubernetai cluster.local {{
        snapshot {east}
    }}
    kubernetai cluster.local {{
        snapshot {west}
    }}
}}
""")
    assert await ask(k, "pay.shop.svc.cluster.local") == ("NXDOMAIN", [])
    assert await ask(k, "idle.shop.svc.cluster.local") == ("NOERROR", ["10.96.1.30"])


async def test_fallthrough_zones_limit_what_goes_on(serve: Serve, east: Path, west: Path) -> None:
    # `fallthrough ZONES`: only names in those zones go on to the next stanza.
    k = await serve(f""".:PORT {{
    bind 127.0.0.1
    kubernetai cluster.local shop.local {{
        snapshot {east}
        fallthrough shop.local
    }}
    kubernetai cluster.local shop.local {{
        snapshot {west}
    }}
}}
""")
    assert await ask(k, "pay.shop.svc.shop.local") == ("NOERROR", ["10.96.2.40"])
    assert await ask(k, "pay.shop.svc.cluster.local") == ("NXDOMAIN", [])


async def test_the_last_stanzas_fallthrough_goes_to_the_next_plugin(serve: Serve, east: Path, west: Path,
                                                                   tmp_path: Path) -> None:
    zone = tmp_path / "db.cluster.west"
    zone.write_text("@ 300 IN SOA ns admin 1 7200 1800 86400 30\n@ 300 IN NS ns\nns 300 IN A 192.0.2.53\n"
                    "extra.shop.svc 300 IN A 192.0.2.1\n")
    k = await serve(f"""cluster.east:PORT cluster.west:PORT {{
    bind 127.0.0.1
    kubernetai cluster.east cluster.west {{
        snapshot {east}
        fallthrough
    }}
    kubernetai cluster.west {{
        snapshot {west}
        fallthrough
    }}
    file {zone} cluster.west
}}
""")
    assert await ask(k, "pay.shop.svc.cluster.west") == ("NOERROR", ["10.96.2.40"])   # second stanza
    assert await ask(k, "extra.shop.svc.cluster.west") == ("NOERROR", ["192.0.2.1"])  # on to file


async def test_a_stanza_not_synced_yet_passes_its_fallthrough_names_on(serve: Serve, west: Path,
                                                                      tmp_path: Path) -> None:
    # The first cluster's API does not answer: with `fallthrough` its names go on to the next
    # stanza (kubernetai answers SERVFAIL there: one cluster would break the other); without it,
    # SERVFAIL (docs/divergences.md).
    kubeconfig = unreachable_kubeconfig(tmp_path / "gone.kubeconfig", free_port())
    k = await serve(f""".:PORT {{
    bind 127.0.0.1
    kubernetai cluster.local {{
        kubeconfig {kubeconfig}
        startup_timeout 50ms
        fallthrough
    }}
    kubernetai cluster.local {{
        snapshot {west}
    }}
    kubernetai cluster.gone {{
        kubeconfig {kubeconfig}
        startup_timeout 50ms
    }}
}}
""")
    assert await ask(k, "pay.shop.svc.cluster.local") == ("NOERROR", ["10.96.2.40"])
    assert await ask(k, "pay.shop.svc.cluster.gone") == ("SERVFAIL", [])
    assert readiness(k) == {"kubernetai:local": False, "kubernetai:local-2": True, "kubernetai:gone": False}


async def test_kubernetes_and_kubernetai_stanzas_in_one_block_and_clusterset_over_them(
        serve: Serve, east: Path, west: Path) -> None:
    k = await serve(f"""cluster.east:PORT cluster.west:PORT cluster.all:PORT {{
    bind 127.0.0.1
    kubernetai cluster.west {{
        snapshot {west}
    }}
    kubernetes cluster.east {{
        snapshot {east}
    }}
    clusterset cluster.all {{
        clusters east west
        local east
    }}
}}
""")
    assert await ask(k, "web.shop.svc.cluster.west") == ("NOERROR", ["10.96.2.10"])
    assert await ask(k, "web.shop.svc.cluster.east") == ("NOERROR", ["10.96.1.10"])
    assert await ask(k, "web.shop.svc.cluster.all") == ("NOERROR", ["10.96.1.10"])  # local first
    assert await ask(k, "pay.shop.svc.cluster.all") == ("NOERROR", ["10.245.1.40"])  # west's pod
    assert readiness(k) == {"kubernetes:east": True, "kubernetai:west": True, "clusterset:cluster.all": True}


def test_one_name_given_to_two_sources_is_refused_at_the_second_stanza(east: Path, west: Path) -> None:
    # A default name moves aside (local-2); a name the Corefile gives twice does not.
    text = (f".:53 {{\n  kubernetai cluster.a {{\n    snapshot {east}\n    cluster same\n  }}\n"
            f"  kubernetai cluster.b {{\n    snapshot {west}\n    cluster same\n  }}\n}}\n")
    try:
        build(parse_text(text, "Corefile"), "Corefile", Services())
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError("two sources under one `cluster` name must be refused")
    assert message.startswith("Corefile:6: kubernetai: two kubernetes stanzas serve the cluster name 'same'")
    assert message.endswith("(first at Corefile:2)")


async def test_one_api_in_two_stanzas_one_limited_to_a_namespace(serve: Serve, east: Path) -> None:
    # kubernetai's README: two stanzas of the same API (here the same file), the first limited to
    # one namespace and falling through to the second for the others.
    k = await serve(f""".:PORT {{
    bind 127.0.0.1
    kubernetai cluster.local {{
        snapshot {east}
        namespaces default
        fallthrough
    }}
    kubernetai cluster.local {{
        snapshot {east}
    }}
}}
""")
    assert await ask(k, "kubernetes.default.svc.cluster.local") == ("NOERROR", ["10.96.0.1"])
    assert await ask(k, "web.shop.svc.cluster.local") == ("NOERROR", ["10.96.1.10"])
    first, second = (h for h in k.server.instance.built.handlers if h.plugin == "kubernetai")
    assert (first.cluster.name, second.cluster.name) == ("local", "local-2")  # two filters, two sources


def test_the_same_source_twice_is_one_cluster_under_one_name(east: Path) -> None:
    text = (f".:53 {{\n  kubernetai cluster.local {{\n    snapshot {east}\n    fallthrough\n  }}\n"
            f"  kubernetai cluster.local {{\n    snapshot {east}\n  }}\n}}\n")
    built = build(parse_text(text, "Corefile"), "Corefile", Services())
    names = [h.cluster.name for h in built.handlers if h.plugin == "kubernetai"]  # type: ignore[attr-defined]
    assert names == ["local", "local"]  # read once when they start (ClusterRegistry.attach)
