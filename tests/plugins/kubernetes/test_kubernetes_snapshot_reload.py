"""A running server whose snapshot file is emptied, cut short or shrunk keeps answering the names
it served; a legitimate change still applies; refusals are logged and counted.

The server runs in the test's loop with the snapshot checked every 50 ms (the logic is the one
production runs every 2 s). Each state is waited for through what the server says about it (a
refusal counted, an answer changed), then the answers are compared with the ones before.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import pytest
import yaml
from prometheus_client import generate_latest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.kube import snapshot
from interkube.pkg.atomicfile import write_atomically
from interkube.plugins.kubernetes.parse import KubernetesConfig, parse
from interkube.server.main import CorefileSource, Server
from testkit.dig import needs_dig, short
from testkit.fakekube import as_list, service, write_snapshot
from testkit.servers import free_port, interkube_process, process_output
from testkit.waiting import until, wait_until

Running = Any  # tests/plugins/conftest.py's Running: a server in the test's loop and its port
Serve = Callable[[str], Awaitable[Running]]

KUBECTL_YAML = Path(__file__).with_name("data") / "cluster.yaml"
REFUSED = "interkube_kubernetes_snapshot_reloads_refused_total"


@pytest.fixture(autouse=True)
def fast_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshot files checked every 50 ms instead of every 2 s."""
    monkeypatch.setattr(snapshot, "CHECK_INTERVAL", 0.05)


def corefile(path: Path, *options: str) -> str:
    body = "".join(f"        {o}\n" for o in (f"snapshot {path}", "cluster west", *options))
    return f"cluster.local:PORT {{\n    bind 127.0.0.1\n    kubernetes {{\n{body}    }}\n}}\n"


def services(n: int) -> list[dict[str, Any]]:
    return [service("app", f"svc-{i}", cluster_ips=[f"10.96.1.{i}"]) for i in range(n)]


def metrics(k: Running) -> str:
    return generate_latest(k.server.services.metrics.registry).decode()


def refused(k: Running, reason: str) -> float:
    """The refusals of west's reloads for ``reason`` counted so far."""
    prefix = f'{REFUSED}{{cluster="west",reason="{reason}"}} '
    line = next((ln for ln in metrics(k).splitlines() if ln.startswith(prefix)), None)
    return float(line[len(prefix):]) if line else 0.0


async def answer(k: Running, name: str) -> tuple[int, list[str]]:
    msg: dns.message.Message = await k.query(name, "A")
    return msg.rcode(), sorted(str(rd) for rrset in msg.answer for rd in rrset)


async def test_an_emptied_or_cut_snapshot_keeps_the_old_answers(serve: Serve, tmp_path: Path,
                                                                interkube_caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "west.yaml"
    text = KUBECTL_YAML.read_text()
    write_atomically(path, text)
    k = await serve(corefile(path))
    names = ("web.app.svc.cluster.local", "kubernetes.default.svc.cluster.local", "pet-0.hl.app.svc.cluster.local")
    before = [await answer(k, n) for n in names]
    assert before[0] == (dns.rcode.NOERROR, ["10.96.0.10"])

    async def still_answering(reason: str, count: int, what: str) -> None:
        """Wait until the server refused the file (or, as before the fix, changed its answers),
        then compare the answers with those from before."""
        async def settled() -> bool:
            return refused(k, reason) >= count or [await answer(k, n) for n in names] != before

        await until(settled, what)
        assert [await answer(k, n) for n in names] == before
        assert refused(k, reason) == count

    # Truncated to zero bytes in place, as `kubectl get ... > west.yaml` does first.
    os.truncate(path, 0)
    await still_answering("empty", 1, "the emptied file refused")
    # YAML that holds no Kubernetes object.
    write_atomically(path, "hello: world\n")
    await still_answering("empty", 2, "hello: world refused")
    # kubectl's output cut mid-document (no `kind: List` yet), and a JSON List cut short.
    write_atomically(path, text[: text.index("\n", len(text) * 2 // 3) + 1])  # at a line's end: valid YAML
    await still_answering("incomplete", 1, "the cut YAML refused")
    write_atomically(path, json.dumps(yaml.safe_load(text))[:4000])
    await still_answering("invalid", 1, "the cut JSON refused")
    lines = [r.getMessage() for r in interkube_caplog.records if "not reloading" in r.getMessage()]
    assert len(lines) == 4, lines
    assert f"{path} gave 25 objects and now gives none (an empty or half-written file?); 25 -> 0 objects" in lines[0]

    # The whole file again, web with another address: taken.
    write_atomically(path, text.replace("clusterIP: 10.96.0.10\n", "clusterIP: 10.96.0.99\n")
                     .replace("- 10.96.0.10\n", "- 10.96.0.99\n"))
    async def web_moved() -> bool:
        return await answer(k, names[0]) == (dns.rcode.NOERROR, ["10.96.0.99"])

    await until(web_moved, "web's new address answered")
    assert [await answer(k, n) for n in names[1:]] == before[1:]
    reloaded = [r.getMessage() for r in interkube_caplog.records if "reloaded snapshot" in r.getMessage()]
    assert reloaded == [f"cluster west: reloaded snapshot {path}: 25 -> 25 objects (17 services, "
                        "8 endpointslices; was 17 services, 8 endpointslices)"]
    assert refused(k, "drop") == 0


async def test_a_drop_beyond_the_share_is_refused_and_one_within_it_applies(serve: Serve, tmp_path: Path) -> None:
    path = write_snapshot(tmp_path / "west.yaml", services(10))
    k = await serve(corefile(path, "snapshot_max_drop 30%"))
    assert await answer(k, "svc-9.app.svc.cluster.local") == (dns.rcode.NOERROR, ["10.96.1.9"])
    write_snapshot(path, services(6))   # 40% fewer

    async def settled() -> bool:  # refused; or, as before the fix, taken
        return refused(k, "drop") == 1 or (await answer(k, "svc-9.app.svc.cluster.local"))[0] != dns.rcode.NOERROR

    await until(settled, "the 40% drop refused")
    assert await answer(k, "svc-9.app.svc.cluster.local") == (dns.rcode.NOERROR, ["10.96.1.9"])
    write_snapshot(path, services(7))   # 30%: within the share

    async def svc_9_gone() -> bool:
        return (await answer(k, "svc-9.app.svc.cluster.local"))[0] == dns.rcode.NXDOMAIN

    await until(svc_9_gone, "the 30% drop applied")
    assert await answer(k, "svc-6.app.svc.cluster.local") == (dns.rcode.NOERROR, ["10.96.1.6"])
    assert refused(k, "drop") == 1
    assert 'interkube_kubernetes_relists_total{cluster="west"} 1.0' in metrics(k)
    # A drop meant to happen: refused, then taken by a Corefile that allows it (a stanza whose
    # options changed reads its files afresh).
    write_snapshot(path, services(2))
    await until(lambda: refused(k, "drop") == 2, "the 71% drop refused")
    assert await answer(k, "svc-6.app.svc.cluster.local") == (dns.rcode.NOERROR, ["10.96.1.6"])
    Path(k.server.source.path).write_text(corefile(path, "snapshot_max_drop 100%").replace("PORT", str(k.port)))
    assert await k.server.reload()
    assert (await answer(k, "svc-6.app.svc.cluster.local"))[0] == dns.rcode.NXDOMAIN
    assert await answer(k, "svc-1.app.svc.cluster.local") == (dns.rcode.NOERROR, ["10.96.1.1"])


@needs_dig
def test_a_serve_process_keeps_answering_through_a_kubectl_style_rewrite(tmp_path: Path) -> None:
    """The reporter's case end to end: `interkube serve`, and a refresh job writing with `>`."""
    path = write_snapshot(tmp_path / "west.yaml", services(5))
    port = free_port()
    conf = tmp_path / "Corefile"
    conf.write_text(corefile(path).replace("PORT", str(port)))
    with interkube_process(conf, port) as proc:
        assert short(port, "svc-4.app.svc.cluster.local") == ["10.96.1.4"]
        # The job's shell has truncated the file and its kubectl has not written yet.
        subprocess.run(["sh", "-c", f": > {path}"], check=True, timeout=10)
        # Refused; or, as before the fix, taken (the name then goes).
        wait_until(lambda: "not reloading" in process_output(proc)
                   or short(port, "svc-4.app.svc.cluster.local") != ["10.96.1.4"], "the emptied file refused", 20)
        assert short(port, "svc-4.app.svc.cluster.local") == ["10.96.1.4"]
        write_atomically(path, yaml.safe_dump(as_list([*services(5), service("app", "new",
                                                                              cluster_ips=["10.96.2.1"])])))
        wait_until(lambda: short(port, "new.app.svc.cluster.local") == ["10.96.2.1"], "the new file taken", 20)
        assert short(port, "svc-4.app.svc.cluster.local") == ["10.96.1.4"]
        log = process_output(proc)
    assert f"cluster west: not reloading the snapshot: {path} gave 5 objects and now gives none" in log
    assert f"cluster west: reloaded snapshot {path}: 5 -> 6 objects (6 services; was 5 services)" in log


def stanza(text: str) -> KubernetesConfig:
    [block] = parse_text(".:53 {\n" + text + "\n}\n", "Corefile")
    return parse(block.directives[0])


def test_snapshot_max_drop_is_a_percentage_for_snapshot_files() -> None:
    assert stanza("kubernetes {\n snapshot a.yaml\n}").snapshot_max_drop == 50
    assert stanza("kubernetes {\n snapshot a.yaml\n snapshot_max_drop 0%\n}").snapshot_max_drop == 0
    assert stanza("kubernetes {\n snapshot_max_drop 100%\n snapshot a.yaml\n}").snapshot_max_drop == 100
    for value, message in [("50", "takes a percentage such as 50%, not '50'"), ("101%", "101% is above 100%"),
                           ("-1%", "takes a percentage such as 50%, not '-1%'"),
                           ("half%", "takes a percentage such as 50%, not 'half%'")]:
        with pytest.raises(ConfigError, match=f"Corefile:4: kubernetes: snapshot_max_drop {message}"):
            stanza(f"kubernetes {{\n snapshot a.yaml\n snapshot_max_drop {value}\n}}")
    with pytest.raises(ConfigError, match=r"Corefile:2: kubernetes: `snapshot_max_drop` \(at Corefile:3\) is for "
                                          "`snapshot` files"):
        stanza("kubernetes {\n snapshot_max_drop 10%\n}")


def test_at_start_up_a_cut_list_stops_the_configuration_and_an_empty_file_serves_nothing(
        tmp_path: Path, interkube_caplog: pytest.LogCaptureFixture) -> None:
    cut = tmp_path / "cut.yaml"
    text = KUBECTL_YAML.read_text()
    cut.write_text(text[: text.index("\n", len(text) // 2) + 1])
    conf = "cluster.local:53 {{\n    bind 127.0.0.1\n    kubernetes {{\n        snapshot {}\n    }}\n}}\n"
    with pytest.raises(ConfigError, match=rf"<built-in default>:3: kubernetes: {cut}: not a complete List: it has "
                                          "items but it has no kind"):
        Server(CorefileSource(path=None, text=conf.format(cut))).build()
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    Server(CorefileSource(path=None, text=conf.format(empty))).build()
    assert any(f"snapshot {empty} holds no objects to serve" in r.getMessage() for r in interkube_caplog.records)
