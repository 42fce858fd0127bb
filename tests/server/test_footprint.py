"""A plain DNS server loads only what its Corefile uses (issue 18, footprint): serving UDP and
TCP with hosts and forward to dns:// upstreams imports neither the DNS-over-HTTPS listener (h2)
nor the DoH upstream client (httpx2); a Corefile that uses them does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testkit.servers import free_port

PROGRAM = """
import asyncio, sys
from interkube.server.main import CorefileSource, Server
from interkube.server.listeners import ListenerOptions

async def main() -> None:
    server = Server(CorefileSource(path=sys.argv[1]), options=ListenerOptions())
    await server.start()
    await server.stop()

asyncio.run(main())
print(sorted(m for m in ("httpx2", "h2", "interkube.server.doh") if m in sys.modules))
"""


def loaded(corefile: Path) -> str:
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(corefile)], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]


def test_hosts_and_forward_load_no_http_library(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 a.example.org\n")
    core = tmp_path / "Corefile"
    core.write_text(f".:{free_port()} {{\n  bind 127.0.0.1\n  hosts {hosts} {{\n    fallthrough\n  }}\n"
                    "  forward . 127.0.0.1:9\n}\n")
    assert loaded(core) == "[]"


def test_a_doh_upstream_loads_its_client(tmp_path: Path) -> None:
    core = tmp_path / "Corefile"
    core.write_text(f".:{free_port()} {{\n  bind 127.0.0.1\n  forward . https://127.0.0.1:9\n}}\n")
    assert loaded(core) == "['h2', 'httpx2']"
