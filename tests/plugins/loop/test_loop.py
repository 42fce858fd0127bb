"""loop: a forward back to the server itself is found at start-up and stops the server with
CoreDNS's message; without a loop the probe is answered once and the server goes on."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.rcode

from testkit.fakeupstream import FakeUpstream
from testkit.servers import free_port
from testkit.waiting import until

Serve = Callable[[str], Awaitable[Any]]  # the `serve` fixture (tests/plugins/conftest.py)


def test_loop_is_detected_and_stops_the_server(tmp_path: Path) -> None:
    port = free_port()
    core = tmp_path / "Corefile"
    core.write_text(f".:{port} {{\n bind 127.0.0.1\n loop\n forward . 127.0.0.1:{port}\n}}\n")
    out = subprocess.run([sys.executable, "-m", "interkube", "serve", "-conf", str(core)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert 'Loop (127.0.0.1:' in out.stderr and f"-> 127.0.0.1:{port}) detected for zone \".\"" in out.stderr
    # What gave it away: the probe, an HINFO query for a random name under the zone, came back
    # through the forward a third time.
    assert re.search(r'query "HINFO \d+\.\d+\." came back 3 times', out.stderr), out.stderr


async def test_no_loop_no_fuss(serve: Serve, example_upstream: FakeUpstream) -> None:
    running = await serve(f"example.:PORT {{\n bind 127.0.0.1\n loop\n forward . {example_upstream.address}\n}}\n")
    loop = running.handler("loop")
    await until(lambda: loop.done, "the loop probe is answered")  # type: ignore[attr-defined]
    assert loop.seen == 1  # type: ignore[attr-defined]
    assert (await running.query("a.example.", "A")).rcode() == dns.rcode.NOERROR
