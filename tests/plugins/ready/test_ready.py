"""ready: 200 when every part is ready, 503 naming those that are not (and the lameduck), on the
address it shares with health."""

from __future__ import annotations

from testkit.fakeupstream import FakeUpstream
from testkit.servers import free_port, http_get, in_process


async def test_health_and_ready_share_an_address(example_upstream: FakeUpstream) -> None:
    port, http = free_port(), free_port()
    core = (f"example.:{port} {{\n bind 127.0.0.1\n health 127.0.0.1:{http}\n ready 127.0.0.1:{http}\n"
            f" forward . {example_upstream.address}\n}}\n")
    async with in_process(core) as server:
        assert await http_get(f"http://127.0.0.1:{http}/health") == (200, "OK")
        assert await http_get(f"http://127.0.0.1:{http}/ready") == (200, "OK")
        assert (await http_get(f"http://127.0.0.1:{http}/nope"))[0] == 404

        def not_yet() -> dict[str, bool]:
            return {"kubernetes:east": False, "kubernetes:west": True}

        checks = server.instance.readiness()  # type: ignore[attr-defined]
        server.services.current_readiness = lambda: [*checks, not_yet]  # type: ignore[attr-defined]
        assert await http_get(f"http://127.0.0.1:{http}/ready") == (503, "kubernetes:east\n")
        server.services.lameduck = True  # type: ignore[attr-defined]
        status, body = await http_get(f"http://127.0.0.1:{http}/ready")
        assert status == 503 and body.splitlines() == ["lameduck", "kubernetes:east"]
        assert await http_get(f"http://127.0.0.1:{http}/health") == (200, "OK")
