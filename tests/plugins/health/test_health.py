"""health: its address, and lameduck (still serving after SIGTERM, not ready, then a clean exit).

/health and /ready on one address are in ../ready/test_ready.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import dns.rcode
import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.server.runtime import build
from testkit.fakeupstream import FakeUpstream
from testkit.servers import aquery, free_port, http_get, interkube_process, process_output
from testkit.waiting import until


def test_health_address_errors() -> None:
    with pytest.raises(ConfigError, match=r"Corefile:2: health: .*IPv6 addresses must be written in brackets"):
        build(parse_text(". {\n health ::1:8080\n}\n"), "Corefile", Services())
    with pytest.raises(ConfigError, match=r"Corefile:3: health: unknown option 'lame'"):
        build(parse_text(". {\n health {\n lame 5s\n }\n}\n"), "Corefile", Services())


def lameduck_corefile(path: Path, port: int, http: int, lameduck: str, upstream: str) -> Path:
    path.write_text(f"example.:{port} {{\n bind 127.0.0.1\n health 127.0.0.1:{http} {{\n  lameduck {lameduck}\n }}\n"
                    f" ready 127.0.0.1:{http}\n forward . {upstream}\n}}\n")
    return path


async def test_lameduck_keeps_serving_and_says_not_ready(tmp_path: Path, example_upstream: FakeUpstream) -> None:
    # An hour: the checks below run in no race against the end of the lameduck (the next test
    # sees it end), and the process is killed afterwards.
    port, http = free_port(), free_port()
    core = lameduck_corefile(tmp_path / "Corefile", port, http, "1h", example_upstream.address)
    with interkube_process(core, port) as proc:
        try:
            os.kill(proc.pid, signal.SIGTERM)

            async def not_ready() -> bool:
                return (await http_get(f"http://127.0.0.1:{http}/ready"))[0] == 503

            await until(not_ready, "ready reports the lameduck")
            assert proc.poll() is None  # still in lameduck
            r = await aquery("a.example.", "A", port)
            assert r.rcode() == dns.rcode.NOERROR
            assert (await http_get(f"http://127.0.0.1:{http}/health"))[0] == 200
            assert (await http_get(f"http://127.0.0.1:{http}/ready")) == (503, "lameduck\n")
            assert "lameduck: still serving for 3600s before shutting down" in process_output(proc)
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # SIGTERM would not cut the hour short
            proc.wait(10)


async def test_the_process_exits_cleanly_when_the_lameduck_ends(tmp_path: Path, example_upstream: FakeUpstream) -> None:
    port, http = free_port(), free_port()
    core = lameduck_corefile(tmp_path / "Corefile", port, http, "100ms", example_upstream.address)
    with interkube_process(core, port) as proc:
        os.kill(proc.pid, signal.SIGTERM)
        code = await asyncio.get_running_loop().run_in_executor(None, lambda: proc.wait(30))
        assert code == 0
        assert "lameduck: still serving for 0.1s before shutting down" in process_output(proc)

