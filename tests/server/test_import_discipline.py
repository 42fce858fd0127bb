"""What `interkube serve` loads: only what its Corefile uses.

A hosts/forward server (issue 18's footprint goal) and a split-DNS sidecar's kubernetes stanza
(issue 15's budget) must not import the libraries only other features need: the metrics
exposition (until something asks for the registry), the HTTP servers, certificates, lightkube
(the common kubeconfigs are read without it), trio (which httpcore2 would load just because it is
installed), other subcommands and other plugins. Each of these costs RSS and start time; an
eager import added at the top of a module these servers load fails here.

The module list is Python's own (``PYTHONPROFILEIMPORTTIME``: one line per module imported, on
stderr), of the real command, after it answered. OpenSSL is checked in what the process mapped:
on asyncio's event loop a server without TLS has neither libssl nor libcrypto (4.9 MiB; see
interkube.server.openssl), and a reload that brings TLS in still serves it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query
import pytest
import yaml

from interkube.corefile.parser import parse_text
from interkube.server import openssl
from testkit.dot import SERVER_NAME, Pki
from testkit.fakekube import FakeKube, endpoint_slice, service, serving_in_thread, write_kubeconfig
from testkit.fakeupstream import Behaviour, in_thread
from testkit.servers import LOOPBACK, free_port, interkube_process, process_output, query
from testkit.waiting import wait_until

#: Never loaded by these servers: top-level packages, and interkube's modules by prefix.
ABSENT_PACKAGES = frozenset({"prometheus_client", "aiohttp", "cryptography", "lightkube", "trio", "yaml"})
ABSENT_MODULES = ("interkube.deploy", "interkube.webhook", "interkube.proxy", "interkube.lab", "interkube.doctor",
                  "interkube.netplan", "interkube.externalnames", "interkube.server.workers",
                  "interkube.kube.lightkube_config", "interkube.plugins.prometheus", "interkube.plugins.file",
                  "interkube.plugins.kubernetes", "interkube.plugins.rewrite", "interkube.plugins.template")


def imported(output: str) -> set[str]:
    """The modules an ``importtime`` log names."""
    names = set()
    for line in output.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


def unexpected(modules: set[str], allowed: frozenset[str] = frozenset()) -> list[str]:
    """The modules of ``modules`` from the lists above. A package counts by its submodules: each
    of those packages loads some, and a bare name is also logged for an import that failed at
    once (trio, which the server marks absent)."""
    return sorted(m for m in modules if m not in allowed and (("." in m and m.split(".")[0] in ABSENT_PACKAGES)
                                                              or m.startswith(ABSENT_MODULES)))


def openssl_mapped(pid: int) -> list[str]:
    """OpenSSL's libraries and Python's modules over them that process ``pid`` has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({Path(line.split()[-1]).name for line in maps.splitlines()
                   if re.search(r"/(libssl|libcrypto)[.-]|/_(ssl|hashlib)\.", line)})


def answers(name: str, port: int) -> list[str]:
    return [rd.to_text() for rrset in query(name, "A", port).answer for rd in rrset]


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_a_hosts_and_forward_server_loads_no_library_it_does_not_use(tmp_path: Path, loop: str) -> None:
    """On asyncio's event loop, not even OpenSSL (uvloop, the default where installed, imports
    ssl itself); nor dnspython's messages."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.7 app.example.org\n")
    port = free_port()
    with in_thread(Behaviour(records={("far.example.net.", "A"): ["198.51.100.9"]})) as upstream:
        core = tmp_path / "Corefile"
        core.write_text(f".:{port} {{\n    bind 127.0.0.1\n    hosts {hosts} example.org\n"
                        f"    forward . {upstream.address}\n    cache 30\n    errors\n}}\n")
        with interkube_process(core, port, args=("-quiet", "--loop", loop),
                               env={"PYTHONPROFILEIMPORTTIME": "1"}) as proc:
            assert answers("app.example.org", port) == ["192.0.2.7"]
            assert answers("far.example.net", port) == ["198.51.100.9"]
            assert answers("far.example.net", port) == ["198.51.100.9"]  # from the cache
            mapped = openssl_mapped(proc.pid)
            modules = imported(process_output(proc))
    assert {"interkube.plugins.hosts.handler", "interkube.plugins.forward.handler",
            "interkube.plugins.cache.handler"} <= modules
    assert unexpected(modules) == []
    # dnspython's messages and records (55 M instructions of a start): hosts writes its answers on
    # the wire, forward and cache pass the bytes on (issue 18, goal 4).
    assert not {"dns.message", "dns.rrset", "dns.rdata"} & modules
    if loop == "asyncio":
        assert mapped == []


#: Dataclasses a hosts/forward server still defines at start: in modules of other sections (each
#: dataclass is a few exec'd functions, about a millisecond of every start; issue 18, goal 4).
STARTUP_DATACLASSES = frozenset({"interkube.server.listeners.ListenerOptions", "interkube.upstream.transport.Backoff",
                                 "interkube.upstream.transport.StreamCounters"})

#: `interkube serve` in a process that reports, when the server settles (its sockets bound, about
#: to answer), what its start did: the dataclasses defined by interkube's modules, whether the
#: package's version was read, the garbage collections between collector.hold() and release().
START_REPORT = """
import dataclasses, gc, os, sys
from interkube.server import collector

events = []
gc.callbacks.append(lambda phase, info: phase == "start" and events.append(info["generation"]))
for name in ("hold", "release"):
    def mark(real=getattr(collector, name), name=name):
        events.append(name)
        real()
    setattr(collector, name, mark)

def report():
    import interkube
    classes = {f"{module.__name__}.{cls.__qualname__}" for module in list(sys.modules.values())
               if module is not None and module.__name__.startswith("interkube.")
               for cls in vars(module).values()
               if isinstance(cls, type) and cls.__module__ == module.__name__ and dataclasses.is_dataclass(cls)}
    held = events[events.index("hold") + 1:events.index("release")]
    print(repr({"dataclasses": sorted(classes), "version read": "__version__" in vars(interkube),
                "collections while held": held, "collector enabled": gc.isenabled(),
                "json": "json" in sys.modules}), flush=True)
    os._exit(0)

collector.settle = report
from interkube.cli import main
main(["serve", "-conf", sys.argv[1], "-quiet", "--loop", "asyncio"])
"""


def test_a_hosts_and_forward_server_starts_without_what_it_does_not_need(tmp_path: Path) -> None:
    """What `interkube serve` spares a hosts/forward server's start (issue 18, goal 4: 0.2 s of
    CPU to the first answer): dataclasses (plain classes and NamedTuples instead), the package's
    version (importlib.metadata's lookup: read when printed), json (for `bind IFACE` only), and
    garbage collections while its modules load and its configuration is built."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.7 app.example.org\n")
    core = tmp_path / "Corefile"
    core.write_text(f".:{free_port()} {{\n    bind 127.0.0.1\n    hosts {hosts} example.org\n"
                    "    forward . 127.0.0.1:9\n}\n")
    done = subprocess.run([sys.executable, "-c", START_REPORT, str(core)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert set(report["dataclasses"]) <= STARTUP_DATACLASSES, report
    assert report["version read"] is False
    assert report["json"] is False
    assert report["collections while held"] == []
    assert report["collector enabled"] is True


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_a_kubernetes_stanza_reads_its_kubeconfig_without_lightkube(tmp_path: Path, form: str) -> None:
    """The sidecar's stanza (kubernetes on one namespace, splitdns in front) through a kubeconfig
    with a CA and a token, over TLS: yaml reads a YAML kubeconfig, nothing else of the list above
    loads, and a JSON kubeconfig (what kubectl reads too) needs no yaml either, like the sidecar's
    in-cluster service account."""
    fake = FakeKube(watch=True, tls=True)
    fake.add_all([service("shop", "db-headless", headless=True),
                  endpoint_slice("shop", "db-headless-a", "db-headless", [{"ip": "10.244.1.10", "hostname": "db-0"}])])
    port = free_port()
    with serving_in_thread(fake):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"prod": fake})
        if form == "json":
            kubeconfig.write_text(json.dumps(yaml.safe_load(kubeconfig.read_text())))
        core = tmp_path / "Corefile"
        core.write_text(f""".:{port} {{
    bind 127.0.0.1
    kubernetes cluster.local {{
        namespaces shop
        kubeconfig {kubeconfig}
        fallthrough
    }}
    splitdns db.example.com {{
        pod ^db-([0-9]+)\\.db\\.example\\.com\\.$ db-{{1}}.db-headless.shop.svc.cluster.local.
    }}
}}
""")
        with interkube_process(core, port, args=("-quiet",), env={"PYTHONPROFILEIMPORTTIME": "1"}) as proc:
            answer = query("db-0.db.example.com", "A", port).answer
            assert [rd.to_text() for rrset in answer for rd in rrset] == ["10.244.1.10"]
            modules = imported(process_output(proc))
    assert {"interkube.plugin.kubestanza", "interkube.kube.live", "httpx2"} <= modules
    in_use = {m for m in modules if m.startswith("interkube.plugins.kubernetes")
              or (form == "yaml" and m.split(".")[0] == "yaml")}
    assert unexpected(modules, allowed=frozenset(in_use)) == []


def test_a_server_started_without_openssl_reloads_into_tls(tmp_path: Path, pki: Pki) -> None:
    """A reload adds a DNS-over-TLS listener and a zone forwarded over TLS (to that listener):
    both answer, through asyncio's TLS transport for forward (which was imported without ssl)
    and interkube's own for the listener."""
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.7 app.example.org\n192.0.2.8 db.secure.example\n")
    port, dot_port = free_port(), free_port()
    core = tmp_path / "Corefile"
    core.write_text(f".:{port} {{\n    bind {LOOPBACK}\n    hosts {hosts} example.org\n}}\n")
    with interkube_process(core, port, args=("-quiet", "--loop", "asyncio")) as proc:
        assert answers("app.example.org", port) == ["192.0.2.7"]
        assert openssl_mapped(proc.pid) == []
        core.write_text(f"""tls://secure.example:{dot_port} {{
    bind {LOOPBACK}
    tls {pki.crt("server")} {pki.key("server")}
    hosts {hosts} secure.example
}}
.:{port} {{
    bind {LOOPBACK}
    errors
    hosts {hosts} example.org {{
        fallthrough
    }}
    forward secure.example tls://{LOOPBACK}:{dot_port} {{
        tls {pki.crt("ca")}
        tls_servername {SERVER_NAME}
    }}
}}
""")
        os.kill(proc.pid, signal.SIGHUP)
        ctx = pki.client_context(cert=None)
        over_tls = dns.message.make_query("db.secure.example", "A")
        wait_until(lambda: dns.query.tls(over_tls, LOOPBACK, port=dot_port, ssl_context=ctx,
                                         server_hostname=SERVER_NAME, timeout=2).answer,
                   "the reloaded configuration's DNS-over-TLS listener answers", ignoring=(OSError,),
                   alive=lambda: proc.poll() is None)
        assert answers("db.secure.example", port) == ["192.0.2.8"], process_output(proc)
        assert answers("app.example.org", port) == ["192.0.2.7"]
        assert any(name.startswith("libssl") for name in openssl_mapped(proc.pid))  # (what the test is worth)


@pytest.mark.parametrize(("corefile", "uses"), [
    (".:53 {\n hosts /etc/hosts\n forward . 127.0.0.1:5300 dns://10.0.0.1\n cache\n}\n", False),
    ("tls://.:853 {\n tls a.crt a.key\n forward . 127.0.0.1\n}\n", True),
    ("https://.:443 {\n forward . 127.0.0.1\n}\n", True),
    (".:53 {\n forward . tls://10.0.0.1\n}\n", True),
    (".:53 {\n forward . 10.0.0.1 {\n  tls_servername x\n }\n merge a. {\n  to https://10.0.0.2\n }\n}\n", True),
    (".:53 {\n kubernetes cluster.local\n}\n", True),
])
def test_openssl_is_needed_by_tls_and_kubernetes(corefile: str, uses: bool) -> None:
    assert openssl.needed(parse_text(corefile, "Corefile")) is uses


def test_modules_imported_without_openssl_get_it_when_it_loads() -> None:
    """What a reload into TLS relies on, in a fresh Python: asyncio's TLS transport, and hashlib
    and hmac on OpenSSL as a normal start has them, once ssl is imported after them."""
    program = """
import sys
from interkube.server import openssl
openssl.import_without()
import asyncio, hashlib, hmac
assert "ssl" not in sys.modules and "_hashlib" not in sys.modules
assert type(hashlib.sha256()).__module__ == "_sha256" and hmac._hashopenssl is None
assert asyncio.sslproto.ssl is None
openssl.catch_up()  # nothing to catch up with yet
assert asyncio.sslproto.ssl is None
import ssl
openssl.catch_up()
assert asyncio.sslproto.ssl is ssl and asyncio.base_events.ssl is ssl
assert asyncio.sslproto.SSLAgainErrors == (ssl.SSLWantReadError, ssl.SSLSyscallError)
assert type(hashlib.sha256()).__module__ == "_hashlib" and hmac._hashopenssl is not None
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
