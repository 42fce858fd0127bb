"""Several server blocks for one zone and port, chosen per query by their view: by the client's
address (the client socket bound to 127.0.0.2 or 127.0.0.3 rather than 127.0.0.1), by the
question's type, in Corefile order with the block without a view as the default, falling back
to shorter zones; on the fast path; with the view in metrics and metadata."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from interkube.corefile.parser import parse_text
from interkube.deploy.corefacts import read_corefile
from interkube.dns.wire import parse_query
from interkube.errors import ConfigError
from interkube.plugin.request import Request
from interkube.plugin.services import Services
from interkube.plugins.view.expression import compile_expression
from interkube.plugins.view.filter import ViewCondition
from interkube.server.dispatch import Dispatcher
from interkube.server.runtime import build
from testkit.servers import free_port, http_get

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (tests/plugins/conftest.py)

BY_CLIENT = """\
.:PORT {
    bind 127.0.0.1
    view two {
        expr incidr(client_ip(), '127.0.0.2/32')
    }
    hosts {
        192.0.2.2 test
    }
}
.:PORT {
    bind 127.0.0.1
    view three {
        expr client_ip() == '127.0.0.3'
    }
    hosts {
        192.0.2.3 test
    }
}
.:PORT {
    bind 127.0.0.1
    hosts {
        192.0.2.1 test
    }
}
"""


async def ask(port: int, name: str = "test.", rdtype: str = "A", *, source: str = "127.0.0.1",
              tcp: bool = False, host: str = "127.0.0.1") -> dns.message.Message:
    q = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype))
    if tcp:
        return await dns.asyncquery.tcp(q, host, port=port, source=source, timeout=3)
    return await dns.asyncquery.udp(q, host, port=port, source=source, timeout=3)


def addresses(msg: dns.message.Message) -> list[str]:
    return [rd.to_text() for rs in msg.answer for rd in rs]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_blocks_of_one_zone_are_chosen_by_the_client_address(serve: Serve, tcp: bool) -> None:
    running = await serve(BY_CLIENT)
    for source, expected in (("127.0.0.1", "192.0.2.1"), ("127.0.0.2", "192.0.2.2"), ("127.0.0.3", "192.0.2.3")):
        assert addresses(await ask(running.port, source=source, tcp=tcp)) == [expected], source


async def test_blocks_are_chosen_by_the_question_type_and_name(serve: Serve) -> None:
    running = await serve("""\
example.org:PORT {
    bind 127.0.0.1
    view six {
        expr type() in ['AAAA'] && name() matches '^www\\\\.'
    }
    hosts {
        2001:db8::6 www.example.org
        192.0.2.66 www.example.org
    }
}
example.org:PORT {
    bind 127.0.0.1
    hosts {
        2001:db8::1 www.example.org mail.example.org
        192.0.2.1 www.example.org
    }
}
""")
    assert addresses(await ask(running.port, "www.example.org", "AAAA")) == ["2001:db8::6"]
    assert addresses(await ask(running.port, "WWW.Example.Org", "AAAA")) == ["2001:db8::6"]  # name() is lower case
    assert addresses(await ask(running.port, "www.example.org", "A")) == ["192.0.2.1"]
    assert addresses(await ask(running.port, "mail.example.org", "AAAA")) == ["2001:db8::1"]


async def test_a_block_without_a_view_written_first_hides_the_later_views(
        serve: Serve, interkube_caplog: pytest.LogCaptureFixture) -> None:
    interkube_caplog.set_level(logging.WARNING)
    running = await serve("""\
.:PORT {
    bind 127.0.0.1
    hosts {
        192.0.2.1 test
    }
}
.:PORT {
    bind 127.0.0.1
    view two {
        expr incidr(client_ip(), '127.0.0.2/32')
    }
    hosts {
        192.0.2.2 test
    }
}
""")
    assert addresses(await ask(running.port, source="127.0.0.2")) == ["192.0.2.1"]
    hidden = re.compile(r"Corefile:7: the view 'two' of zone \. is never used: the block at \S*Corefile:1, ")
    assert any(hidden.search(r.getMessage()) for r in interkube_caplog.records)


async def test_a_query_no_block_of_its_zone_takes_goes_to_the_shorter_zone(serve: Serve) -> None:
    running = await serve("""\
example.org:PORT {
    bind 127.0.0.1
    view inside {
        expr incidr(client_ip(), '127.0.0.2/32')
    }
    hosts {
        10.1.0.10 www.example.org
    }
}
sub.example.org:PORT {
    bind 127.0.0.1
    view never {
        expr false
    }
    whoami
}
.:PORT {
    bind 127.0.0.1
    hosts {
        203.0.113.10 www.example.org www.sub.example.org
    }
}
""")
    assert addresses(await ask(running.port, "www.example.org", source="127.0.0.2")) == ["10.1.0.10"]
    assert addresses(await ask(running.port, "www.example.org")) == ["203.0.113.10"]
    # sub.example.org's only block refuses: example.org's view is asked next, then the root.
    assert addresses(await ask(running.port, "www.sub.example.org")) == ["203.0.113.10"]
    r = await ask(running.port, "www.sub.example.org", source="127.0.0.2")
    assert (r.rcode(), addresses(r)) == (dns.rcode.SERVFAIL, [])  # example.org's hosts: not there (no SOA)


async def test_without_a_default_block_a_query_no_view_takes_is_refused(serve: Serve) -> None:
    running = await serve("""\
example.org:PORT {
    bind 127.0.0.1
    view inside {
        expr incidr(client_ip(), '127.0.0.2/32')
    }
    hosts {
        10.1.0.10 www.example.org
    }
}
""")
    assert addresses(await ask(running.port, "www.example.org", source="127.0.0.2")) == ["10.1.0.10"]
    assert (await ask(running.port, "www.example.org")).rcode() == dns.rcode.REFUSED
    assert (await ask(running.port, "www.example.net", source="127.0.0.2")).rcode() == dns.rcode.REFUSED


async def test_server_ip_is_the_address_the_query_came_to(serve: Serve) -> None:
    running = await serve("""\
.:PORT {
    bind 127.0.0.1 127.0.0.2
    view second {
        expr server_ip() == '127.0.0.2' && server_port() == 'PORT'
    }
    hosts {
        192.0.2.2 test
    }
}
.:PORT {
    bind 127.0.0.1 127.0.0.2
    hosts {
        192.0.2.1 test
    }
}
""")
    assert addresses(await ask(running.port, host="127.0.0.2")) == ["192.0.2.2"]
    assert addresses(await ask(running.port, host="127.0.0.1")) == ["192.0.2.1"]


def built(corefile: str) -> Any:
    return build(parse_text(corefile, "Corefile"), "Corefile", Services())


def test_two_blocks_without_a_view_for_one_zone_are_still_an_error() -> None:
    text = BY_CLIENT.replace("PORT", "5300")
    text += ".:5300 {\n    bind 127.0.0.1\n    whoami\n}\n"
    with pytest.raises(ConfigError, match=r"Corefile:25: zone dns://.:5300 is defined more than once "
                                          r"\(first at Corefile:19\)"):
        built(text)
    assert read_corefile(BY_CLIENT.replace("PORT", "5300")).ports  # render takes the views too
    with pytest.raises(ConfigError, match=r"Corefile:25: zone dns://\.:5300 is defined more than once"):
        read_corefile(text)


def request(name: str, client: str, rdtype: str = "A") -> Request:
    wire = dns.message.make_query(name, rdtype).to_wire()
    q = parse_query(wire)
    assert q is not None
    return Request(wire, q, (client, 33333), "udp")


def test_views_decide_on_the_fast_path_and_remember_their_answer() -> None:
    b = built(BY_CLIENT.replace("PORT", "5300"))
    [(lkey, chains)] = b.chains.items()
    dispatcher = Dispatcher(chains, b.views[lkey])
    for client, expected in (("127.0.0.2", "192.0.2.2"), ("::ffff:127.0.0.3", "192.0.2.3"),
                             ("192.168.1.1", "192.0.2.1")):
        resp = dispatcher.fast(request("test.", client))
        assert resp is not None, "a view must not send an answer from memory to the slow path"
        assert addresses(dns.message.from_wire(resp)) == [expected], client
    # Each view remembers its answer per what its expressions read: here the client's address.
    two = ViewCondition([compile_expression("incidr(client_ip(), '127.0.0.2/32')")], None)
    answers = [two.accepts(request(name, client)) for name in ("a.", "b.", "c.") for client in ("127.0.0.2", "::1")]
    assert answers == [True, False] * 3 and len(two.memo) == 2
    by_id = ViewCondition([compile_expression("id() == 0 || type() == 'A'")], None)  # the ID: nothing to keep
    assert by_id.accepts(request("a.", "127.0.0.2")) and len(by_id.memo) == 0


async def test_metrics_carry_the_view(serve: Serve) -> None:
    mport = free_port()
    prometheus = f"    prometheus 127.0.0.1:{mport}\n"
    running = await serve(BY_CLIENT.replace("    bind 127.0.0.1\n", "    bind 127.0.0.1\n" + prometheus))
    await ask(running.port, source="127.0.0.2")
    await ask(running.port, source="127.0.0.1")
    status, text = await http_get(f"http://127.0.0.1:{mport}/metrics")
    assert status == 200
    requests = [line for line in text.splitlines() if line.startswith("interkube_dns_requests_total{")]
    assert any('view="two"' in line and line.endswith(" 1.0") for line in requests), requests
    assert any('view=""' in line and line.endswith(" 1.0") for line in requests), requests
    assert not any('view="three"' in line for line in requests)


async def test_metadata_has_the_view_name_and_expressions_read_the_block_s_metadata(
        serve: Serve, interkube_caplog: pytest.LogCaptureFixture) -> None:
    running = await serve("""\
.:PORT {
    bind 127.0.0.1
    view self {
        expr metadata('view/name') == 'self' && client_ip() == '127.0.0.2'
    }
    metadata
    log . "{name} {/view/name}"
    hosts {
        192.0.2.2 test
    }
}
.:PORT {
    bind 127.0.0.1
    view nometa {
        expr metadata('view/name') == '' && client_ip() == '127.0.0.3'
    }
    log . "{name} {/view/name}"
    hosts {
        192.0.2.3 test
    }
}
.:PORT {
    bind 127.0.0.1
    hosts {
        192.0.2.1 test
    }
}
""")
    assert addresses(await ask(running.port, source="127.0.0.2")) == ["192.0.2.2"]
    assert addresses(await ask(running.port, source="127.0.0.3")) == ["192.0.2.3"]
    assert [r.getMessage() for r in interkube_caplog.records if r.name == "interkube.query"] == [
        "test. self", "test. -"]
