"""metadata: a table per query only where the plugin is, providers asked for its zones, log's
{/LABEL} placeholders and the log/type and log/class labels; the README's example. The lines
are compared with CoreDNS's in test_metadata_vs_coredns.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.message
import pytest

from interkube.dns.wire import parse_query
from interkube.errors import ConfigError
from interkube.plugin import metadata
from interkube.plugin.handler import Handler
from interkube.plugin.request import Request
from interkube.plugins.metadata.handler import MetadataHandler
from interkube.plugins.metadata.parse import MetadataConfig, parse
from testkit.corefile import directive
from testkit.readme import on_port, readme_examples
from testkit.servers import aquery, free_port, in_process

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (tests/plugins/conftest.py)

ZONE = """$ORIGIN example.org.
@ 3600 IN SOA ns.example.org. admin.example.org. 1 7200 3600 1209600 3600
@ 3600 IN NS ns.example.org.
ns 3600 IN A 192.0.2.53
www 3600 IN A 192.0.2.10
sub 3600 IN NS ns.sub.example.org.
ns.sub 3600 IN A 192.0.2.54
"""


def request(name: str) -> Request:
    wire = dns.message.make_query(name, "A").to_wire()
    q = parse_query(wire)
    assert q is not None
    return Request(wire, q, ("127.0.0.1", 5), "udp")


class Seen(Handler):
    """The end of a test chain: what the handlers before it left in the request."""

    def __init__(self) -> None:
        self.meta: list[dict[str, Any] | None] = []

    def fast(self, req: Request) -> bytes | None:
        self.meta.append(None if req.meta is None else dict(req.meta))
        return b""


def test_parse() -> None:
    assert parse(directive("metadata")) == MetadataConfig(())
    assert parse(directive("metadata Example.ORG")) == MetadataConfig(("example.org.",))
    with pytest.raises(ConfigError, match="Corefile:2: metadata: takes no block"):
        parse(directive("metadata {\n x\n}"))


def test_the_api_without_and_with_a_table() -> None:
    req = request("a.example.")
    assert not metadata.set_value(req, "x/y", "1") and metadata.value(req, "x/y") is None
    req.meta = {}
    calls = []

    def lazy() -> str:
        calls.append(1)
        return "computed"

    assert metadata.set_value(req, "x/y", lazy) and metadata.set_value(req, "x/z", "plain")
    assert calls == []
    assert metadata.value(req, "x/y") == metadata.value(req, "x/y") == "computed" and calls == [1]
    assert metadata.labels(req) == ["x/y", "x/z"] and metadata.value(req, "x/none") is None
    assert [metadata.is_label(t) for t in ("a/b", "a/b/c", "/b", "a/", "ab")] == [True, True, False, False, False]


def test_providers_are_asked_for_the_zones_and_the_table_is_fresh_each_time() -> None:
    providers = metadata.Providers()
    handler = MetadataHandler(["example.org."], providers)
    providers.append(lambda req: metadata.set_value(req, "test/name", req.qname_text))
    seen = Seen()
    handler.next = seen
    inside = request("www.example.org.")
    inside.meta = {"old/value": "left from an earlier pass"}
    handler.fast(inside)
    handler.fast(request("www.example.net."))
    assert seen.meta == [{"test/name": "www.example.org."}, {}]


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "interkube.query"]


async def test_log_type_and_class(serve: Serve, tmp_path: Path, interkube_caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "db").write_text(ZONE)
    fmt = '"{name} {type} {/log/type} {/log/class} {/no/such}"'
    running = await serve(f"example.org:PORT {{\n bind 127.0.0.1\n metadata\n log . {fmt}\n"
                          f" file {tmp_path / 'db'}\n}}\nexample.net:PORT {{\n bind 127.0.0.1\n log . {fmt}\n"
                          " hosts {\n  192.0.2.1 www.example.net\n }\n}\n")
    for name, rdtype in (("www.example.org", "A"), ("www.example.org", "MX"), ("nope.example.org", "A"),
                         ("x.sub.example.org", "A"), ("www.example.net", "A")):
        await running.query(name, rdtype)
    assert lines(interkube_caplog) == [
        "www.example.org. A NOERROR success -", "www.example.org. MX NODATA denial -",
        "nope.example.org. A NXDOMAIN denial -", "x.sub.example.org. A DELEGATION success -",
        "www.example.net. A - - -"]  # no metadata in that block: every label is `-`


async def test_readme_example(interkube_caplog: pytest.LogCaptureFixture) -> None:
    (example,) = readme_examples("metadata")
    port = free_port()
    async with in_process(on_port(example, port)):
        await aquery("www.example.org", "A", port)
        await aquery("www.example.org", "TXT", port)
    assert lines(interkube_caplog) == ["A www.example.org. NOERROR success", "TXT www.example.org. NOERROR success"]
