"""errors with `consolidate` in CoreDNS and in interkube, the same failing queries: the same lines.

Both forward to a port where nothing listens, so every query fails in `forward`. What each
server says about the failure is its own (a Go socket error, interkube's upstream message), so
the text after `NAME TYPE:` is left out; the rest (rcode, name, type, counts, patterns, periods)
must match. The counts of the periods under way are written when the servers stop, as CoreDNS
does on shutdown, so no test waits for a period to end. Needs the CoreDNS peer.
"""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from testkit.coredns import CoreDNS
from testkit.servers import free_port, interkube_process, process_output

pytestmark = pytest.mark.peers

#: Server block zone -> its errors options, and how many queries fail in it.
BLOCKS = {
    "counted.test": ('consolidate 1h "." warning', 3),
    "shown.test": ('consolidate 1h "." error show_first', 3),
    "once.test": ('consolidate 1h "." info show_first', 1),
    # One error: a bare `errors` logs a lone error as CoreDNS does; more with one message are
    # consolidated in interkube (docs/divergences.md D19; test_errors.py covers that).
    "plain.test": ("", 1),
    "missed.test": ('consolidate 1h "^this matches nothing$" warning', 2),
}


def corefile(port_suffix: str, closed_port: int) -> str:
    blocks = []
    for zone, (options, _) in BLOCKS.items():
        errors = f"errors {{\n        {options}\n    }}" if options else "errors"
        blocks.append(f"{zone}{port_suffix} {{\n    bind 127.0.0.1\n    {errors}\n"
                      f"    forward . 127.0.0.1:{closed_port}\n}}\n")
    return textwrap.dedent("".join(blocks))


EXPECTED = sorted([
    "[WARNING] plugin/errors: 3 errors like '.' occurred in last 1h0m0s",
    "[ERROR] plugin/errors: 2 www.shown.test. A: MESSAGE",
    "[ERROR] plugin/errors: 3 errors like '.' occurred in last 1h0m0s",
    "[INFO] plugin/errors: 2 www.once.test. A: MESSAGE",
    "[ERROR] plugin/errors: 2 www.plain.test. A: MESSAGE",
    "[ERROR] plugin/errors: 2 www.missed.test. A: MESSAGE",
    "[ERROR] plugin/errors: 2 www.missed.test. A: MESSAGE",
])

_MESSAGE = re.compile(r"^(\[\w+\] plugin/errors: \d+ \S+ \S+): .*$")


def error_lines(output: str) -> list[str]:
    return sorted(_MESSAGE.sub(r"\1: MESSAGE", line) for line in output.splitlines()
                  if "plugin/errors: " in line)


async def fail(port: int, name: str) -> None:
    q = dns.message.make_query(name, "A")
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=15)
    assert r.rcode() == dns.rcode.SERVFAIL


async def test_consolidated_lines_as_coredns_writes_them(coredns_binary: Path, tmp_path: Path) -> None:
    closed, port = free_port(), free_port()
    (tmp_path / "Corefile").write_text(corefile(f":{port}", closed))
    with CoreDNS(coredns_binary, corefile("", closed), tmp_path / "coredns") as coredns, \
            interkube_process(tmp_path / "Corefile", port) as interkube:
        # All at once: a failing upstream costs interkube a timeout per block, not per query.
        await asyncio.gather(*(fail(p, f"WWW.{zone}") for zone, (_, n) in BLOCKS.items()
                               for p in (coredns.port, port) for _ in range(n)))
    theirs = error_lines(coredns.process.log_path.read_text())
    ours = error_lines(process_output(interkube))
    # What CoreDNS's README says: a count per rule and period at the rule's level; with
    # show_first the first error at that level too, and no count for a period of one error; an
    # error no rule matches on its own line at ERROR.
    assert theirs == EXPECTED
    assert ours == EXPECTED
