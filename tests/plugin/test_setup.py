"""The setup contract (interkube.plugin.setup): a config-only plugin gives no handler and lives by
the hooks it registers, hooks run in order and stop in reverse, a directive's errors carry its
line, and the server label names the block's address as CoreDNS's metrics do."""

from __future__ import annotations

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.plugin.setup import BlockSettings, Hooks, SetupContext
from interkube.server.runtime import build


def test_config_only_plugins_give_no_handler_but_hooks() -> None:
    built = build(parse_text(".:5300 {\n health 127.0.0.1:0\n ready 127.0.0.1:0\n reload\n errors\n}\n"),
                  "Corefile", Services())
    assert [h.plugin for h in built.handlers] == ["errors"]
    hooks = {h.plugin: h for h in built.hooks}
    assert set(hooks) == {"reload", "ready", "health", "errors"}
    assert hooks["health"].final_shutdown and hooks["health"].startup and hooks["health"].shutdown
    assert hooks["ready"].startup and not hooks["ready"].final_shutdown


async def test_hooks_start_in_order_and_stop_in_reverse() -> None:
    ran: list[str] = []
    hooks = Hooks("test")

    def step(name: str):  # type: ignore[no-untyped-def]
        async def hook() -> None:
            ran.append(name)
        return hook

    ctx = SetupContext(zones=(".",), port=53, transport="dns", corefile="Corefile", block=BlockSettings(),
                       services=Services(), hooks=hooks)
    ctx.on_startup(step("open"))
    ctx.on_startup(step("watch"))
    ctx.on_shutdown(step("close"))
    ctx.on_shutdown(step("unwatch"))
    await hooks.start()
    await hooks.stop()
    assert ran == ["open", "watch", "unwatch", "close"]


def test_errors_carry_the_directive_line() -> None:
    d = parse_text(". {\n errors\n forward . 127.0.0.1\n}\n")[0].directives[1]
    ctx = SetupContext(zones=(".",), port=53, transport="dns", corefile="Corefile", block=BlockSettings(),
                       services=Services(), directive=d)
    with pytest.raises(ConfigError, match=r"^Corefile:3: "):
        raise ctx.error("no upstream answers")


@pytest.mark.parametrize(("bind", "label"), [
    ((), "dns://:53"), (("127.0.0.1",), "dns://127.0.0.1:53"), (("::1", "127.0.0.1"), "dns://[::1]:53"),
])
def test_server_label(bind: tuple[str, ...], label: str) -> None:
    ctx = SetupContext(zones=(".",), port=53, transport="dns", corefile="Corefile",
                       block=BlockSettings(bind=bind), services=Services())
    assert ctx.server_label == label
