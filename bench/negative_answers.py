"""What a negative answer to a name nobody asked before costs (issue 19 §7): written on the wire
(interkube.dns.negative) against built through dnspython, as the handlers built them before.

In process, no sockets: a file zone, a kubernetes snapshot and a hosts file are set up as
`interkube serve` sets them up, and each variant answers fresh random names below them (NXDOMAIN
for file and kubernetes, NODATA below file's wildcard, SERVFAIL for hosts), each query parsed
and answered as the fast path does (parse_query, the handler's fast(); the build budget is
lifted so that the dnspython variant builds on the spot). "dnspython" turns the wire writers
off (each handler's wire_answer, the kubernetes shortcut and negative_answer give None: the
handlers' build then renders with dnspython, as before). Rounds alternate the two; CPU time of this process per
answer, median of the rounds (CPU time survives a shared machine better than wall time).

    python3 bench/negative_answers.py [--names 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere

import dns.message

from bench import k8s
from interkube.corefile.parser import parse_text
from interkube.dns.wire import parse_query
from interkube.plugin import answers, kubestanza
from interkube.plugin.handler import Handler, Terminal
from interkube.plugin.request import Request
from interkube.plugin.services import Services
from interkube.plugins.file import handler as file_handler
from interkube.server.runtime import build

ZONE_FILE = """$ORIGIN example.org.
@ 3600 IN SOA ns h 1 7200 3600 1209600 3600
@ IN NS ns
ns IN A 127.0.0.1
www IN A 192.0.2.1
* IN TXT "wild"
"""
#: (zone, type, what the answer is) per case.
CASES = (("cluster.local.", "A", "kubernetes NXDOMAIN"), ("example.org.", "MX", "file NODATA (wildcard)"),
         ("www.example.org.", "A", "file NXDOMAIN"), ("mem.test.", "A", "hosts SERVFAIL"))


def chain(tmp: Path) -> Handler:
    (tmp / "example.db").write_text(ZONE_FILE)
    (tmp / "hosts").write_text("".join(f"10.0.0.{i + 1} p{i}.mem.test\n" for i in range(100)))
    k8s.write_snapshot(tmp / "snapshot.yaml", k8s.services(200, 50))
    corefile = (f".:53 {{\n kubernetes cluster.local {{\n  snapshot {tmp / 'snapshot.yaml'}\n }}\n"
                f" file {tmp / 'example.db'} example.org\n"
                f" hosts {tmp / 'hosts'} mem.test\n}}\n")
    built = build(parse_text(corefile), "bench", Services())
    [chains] = built.chains.values()
    [(_, head)] = chains.values()
    return head


@contextmanager
def dnspython_only(head: Handler) -> Iterator[None]:
    """The handlers as they were: every miss built and rendered through dnspython."""
    with ExitStack() as stack:
        handler = head
        while not isinstance(handler, Terminal):
            for attr in ("wire_answer", "_wire_negative"):
                if hasattr(handler, attr):
                    stack.enter_context(mock.patch.object(handler, attr, lambda *_: None))
            handler = handler.next
        for module in (kubestanza, file_handler):
            stack.enter_context(mock.patch.object(module, "negative_answer", lambda *_: None))
        yield


def queries(rnd: random.Random, suffix: str, rdtype: str, count: int) -> list[bytes]:
    out = []
    for _ in range(count):
        labels = ".".join("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rnd.randint(4, 12)))
                          for _ in range(rnd.randint(1, 3)))
        edns = rnd.random() < 0.5
        out.append(dns.message.make_query(f"{labels}.{suffix}", rdtype, use_edns=0 if edns else False,
                                          want_dnssec=edns and rnd.random() < 0.3).to_wire())
    return out


def per_answer(head: Handler, wires: list[bytes], check: Callable[[bytes], None]) -> float:
    """CPU µs per answer for ``wires`` (each a name not asked before)."""
    builds = answers.INLINE_BUILDS
    builds.serving = True  # (no budget: the dnspython variant builds here, not on a slow path)
    try:
        cpu0 = time.process_time()
        for wire in wires:
            query = parse_query(wire)
            assert query is not None
            response = head.fast(Request(wire, query, ("127.0.0.1", 5353), "udp"))
        cpu = time.process_time() - cpu0
    finally:
        builds.serving = False
    assert response is not None
    check(response)
    return cpu / len(wires) * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", type=int, default=3000, help="fresh names per case, variant and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=19)
    opts = ap.parse_args()
    rnd = random.Random(opts.seed)
    with tempfile.TemporaryDirectory(prefix="negative_answers-") as tmp:
        head = chain(Path(tmp))
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(opts.rounds):
            for variant in ("wire", "dnspython"):
                for suffix, rdtype, label in CASES:
                    wires = queries(rnd, suffix, rdtype, opts.names)
                    expected = 2 if label.startswith("hosts") else 0 if "NODATA" in label else 3

                    def check(response: bytes, expected: int = expected, label: str = label) -> None:
                        assert response[3] & 0x0F == expected, label

                    if variant == "wire":
                        us = per_answer(head, wires, check)
                    else:
                        with dnspython_only(head):
                            us = per_answer(head, wires, check)
                    results.setdefault((label, variant), []).append(us)
    print(f"{'case':26s} {'wire us':>9s} {'dnspython us':>13s} {'ratio':>7s}")
    for _, _, label in CASES:
        wire = statistics.median(results[(label, "wire")])
        slow = statistics.median(results[(label, "dnspython")])
        print(f"{label:26s} {wire:9.1f} {slow:13.1f} {slow / wire:6.1f}x")
    print("(CPU time of this process per fresh name: parse, chain, answer, template kept; medians of "
          f"{opts.rounds} alternating rounds of {opts.names:,d} names; figures from a shared machine are noisy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
