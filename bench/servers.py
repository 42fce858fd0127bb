"""The servers compared: interkube and its peers, each configured for each scenario.

Every server listens on 127.0.0.1 only, on a free port, and is configured to give the answers
:meth:`bench.scenarios.Scenario.expected` computes. Nothing is ever asked off this machine:
unbound refuses everything outside the benchmark zones, knot-resolver's root hints point at
127.0.0.1 and its priming/trust-anchor modules are unloaded, dnsmasq has no upstream but the
loopback one, CoreDNS and interkube serve only the benchmark zone.

Tuning is each program's plain configuration for the job (one thread, caches on or off as the
scenario says), plus the few limits that would otherwise cap a benchmark rather than the
server: dnsmasq's 150 concurrent forwards, unbound's 10 TCP connections per thread.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from bench.dot import Pki
from bench.procs import GENERATOR_CPU, SERVER_CPU
from bench.scenarios import Scenario

LOOPBACK = "127.0.0.1"


@dataclass
class Context:
    """What the scenario has set up around the servers."""

    upstream_port: int | None = None
    snapshot: Path | None = None
    kubeconfig: Path | None = None
    kube_skip: str | None = None       # why CoreDNS cannot have its API server, if it cannot
    loop: str | None = None            # interkube --loop
    responder_argv: list[str] | None = None  # S0: loadgen's responder, minus its port
    pki: Pki | None = None             # S6: the run's CA and server certificate


@dataclass
class Launch:
    argv: list[str]
    cpus: tuple[int, ...] = (SERVER_CPU,)
    env: dict[str, str] | None = None
    cwd: Path | None = None
    pin_children: bool = False         # pin each worker process to one of `cpus` once started


@dataclass
class Server:
    """One server (or one variant of it, e.g. interkube with two workers)."""

    name: str                          # the peer's key: interkube, unbound, dnsmasq, kresd, coredns
    workers: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.workers > 1:
            unit = {"interkube": "workers", "kresd": "processes"}.get(self.name, "threads")
            return f"{self.name} ({self.workers} {unit})"
        return self.name

    @property
    def cpus(self) -> tuple[int, ...]:
        return (SERVER_CPU, GENERATOR_CPU) if self.workers > 1 else (SERVER_CPU,)

    # Subclasses implement these.
    def unavailable(self) -> str | None:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def skip_reason(self, sc: Scenario, ctx: Context) -> str | None:
        return None

    def launch(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> Launch:
        raise NotImplementedError


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return "?"
    out = (done.stdout + done.stderr).strip().splitlines()
    return out[0] if out else "?"


def daemon(name: str) -> str | None:
    """Where the peer ``name`` is installed: Debian puts unbound, dnsmasq and kresd in /usr/sbin,
    which an ordinary user's PATH does not include."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def hosts_file(sc: Scenario, path: Path) -> Path:
    path.write_text("".join(f"{ip} {name.rstrip('.')}\n" for name, ip in sc.records))
    return path


def coredns_style_corefile(sc: Scenario, ctx: Context, port: int, workdir: Path, kubernetes: str) -> str:
    """The Corefile interkube and CoreDNS both serve a scenario with: the same plugins and
    options; ``kubernetes`` is the line in the kubernetes block (where the cluster's data comes
    from)."""
    zone = sc.zone.rstrip(".")
    scheme, tls = "", ""
    if sc.transport == "dot":
        # A tls:// block serves DNS over TLS only; the tls plugin gives it the certificate.
        assert ctx.pki is not None
        scheme, tls = "tls://", f"    tls {ctx.pki.cert} {ctx.pki.key}\n"
    if sc.kind == "memory":
        hosts = hosts_file(sc, workdir / "hosts")
        body = f"    hosts {hosts} {zone} {{\n        ttl {sc.ttl}\n        reload 0\n    }}\n"
    elif sc.kind == "k8s":
        body = f"    kubernetes {zone} {{\n        {kubernetes}\n    }}\n"
    else:
        body = ("    cache\n" if sc.kind == "cache" else "") + \
            f"    forward . {LOOPBACK}:{ctx.upstream_port}\n"
    return f"{scheme}{zone}:{port} {{\n    bind {LOOPBACK}\n{tls}{body}}}\n"


# --- interkube ---------------------------------------------------------------------------


@cache
def interkube_plugins() -> tuple[str, ...]:
    """What ``interkube serve -plugins`` lists (the plugins this build has)."""
    done = subprocess.run([sys.executable, "-m", "interkube", "serve", "-plugins"],
                          capture_output=True, text=True, timeout=60, check=False)
    return tuple(done.stdout.split()) if done.returncode == 0 else ()


@cache
def interkube_help() -> str:
    done = subprocess.run([sys.executable, "-m", "interkube", "serve", "--help"],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout


class Interkube(Server):
    def unavailable(self) -> str | None:
        try:
            import interkube  # noqa: F401
        except ImportError:
            return "the interkube package is not importable (pip install -e .)"
        return None

    def version(self) -> str:
        from importlib.metadata import version

        try:
            v = version("interkube")
        except Exception:  # metadata missing in an odd install
            v = "?"
        repo = str(Path(__file__).resolve().parent.parent)
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=False).stdout.strip()
        # The server runs from the working tree (editable install), which may differ from HEAD.
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, check=False).stdout.strip()
        where = f"{commit}{' + uncommitted changes in src/' if dirty else ''}" if commit else "no git"
        return f"{v} ({where}, Python {sys.version.split()[0]})"

    def skip_reason(self, sc: Scenario, ctx: Context) -> str | None:
        have = set(interkube_plugins())
        missing = [p for p in sc.needs_plugins if p not in have]
        if missing:
            return (f"`interkube serve -plugins` does not list {', '.join(missing)} "
                    "(the plugin is not in this build yet)")
        if self.workers > 1 and "--workers" not in interkube_help():
            return ("`interkube serve --help` has no --workers option yet (SO_REUSEPORT "
                    "workers); nothing to measure")
        return None

    def corefile(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> str:
        return coredns_style_corefile(sc, ctx, port, workdir, f"snapshot {ctx.snapshot}")

    def launch(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> Launch:
        conf = workdir / "Corefile"
        conf.write_text(self.corefile(sc, ctx, port, workdir))
        argv = [sys.executable, "-m", "interkube", "serve", "-conf", str(conf), "-quiet"]
        if ctx.loop:
            argv += ["--loop", ctx.loop]
        if self.workers > 1:
            argv += ["--workers", str(self.workers)]
        return Launch(argv, self.cpus, cwd=workdir, pin_children=self.workers > 1)


# --- unbound -----------------------------------------------------------------------------


class Unbound(Server):
    def unavailable(self) -> str | None:
        return None if daemon("unbound") else "unbound is not installed (Debian package unbound)"

    def version(self) -> str:
        return _first_line([daemon("unbound") or "unbound", "-V"]).replace("Version ", "")

    def launch(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> Launch:
        zone = sc.zone
        lines = [
            "server:",
            f"    interface: {LOOPBACK}", f"    port: {port}",
            "    do-daemonize: no", "    use-syslog: no", '    logfile: ""', "    verbosity: 0",
            '    chroot: ""', '    username: ""', f'    directory: "{workdir}"', '    pidfile: ""',
            "    do-ip6: no", f"    num-threads: {self.workers}",
            f"    access-control: {LOOPBACK}/8 allow",
            '    module-config: "iterator"',
            "    incoming-num-tcp: 64",
            *self._tls(sc, ctx, port),
            # Never recurse off the machine: everything outside the benchmark zone is refused.
            '    local-zone: "." refuse',
        ]
        if sc.kind in ("memory", "k8s"):
            lines.append(f'    local-zone: "{zone}" static')
            lines += [f'    local-data: "{n} {sc.ttl} IN A {ip}"' for n, ip in sc.records]
        else:
            lines += [f'    local-zone: "{zone}" transparent', "    do-not-query-localhost: no"]
            if sc.kind == "forward":
                # unbound has no "cache off"; these make every answer expire at once, and
                # forward-no-cache keeps the zone's data out of the cache.
                lines += ["    cache-max-ttl: 0", "    cache-max-negative-ttl: 0"]
            lines += ["forward-zone:", f'    name: "{zone}"',
                      f"    forward-addr: {LOOPBACK}@{ctx.upstream_port}"]
            if sc.kind == "forward":
                lines.append("    forward-no-cache: yes")
        conf = workdir / "unbound.conf"
        conf.write_text("\n".join(lines) + "\n")
        return Launch([daemon("unbound") or "unbound", "-d", "-c", str(conf)], self.cpus, cwd=workdir)

    @staticmethod
    def _tls(sc: Scenario, ctx: Context, port: int) -> list[str]:
        """DoT: unbound serves TLS (and no plain TCP) on the interfaces whose port is tls-port:
        here its only one."""
        if sc.transport != "dot":
            return []
        assert ctx.pki is not None
        return [f'    tls-service-key: "{ctx.pki.key}"', f'    tls-service-pem: "{ctx.pki.cert}"',
                f"    tls-port: {port}"]


# --- dnsmasq -----------------------------------------------------------------------------


class Dnsmasq(Server):
    def unavailable(self) -> str | None:
        if self.workers > 1:
            return "dnsmasq is single-threaded"
        return None if daemon("dnsmasq") else "dnsmasq is not installed (Debian package dnsmasq-base)"

    def skip_reason(self, sc: Scenario, ctx: Context) -> str | None:
        if sc.transport == "dot":
            return "dnsmasq has no DNS-over-TLS server (it serves UDP and TCP only)"
        return None

    def version(self) -> str:
        return _first_line([daemon("dnsmasq") or "dnsmasq", "--version"]).split("  ")[0].replace("Dnsmasq version ", "")

    def launch(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> Launch:
        zone = sc.zone.rstrip(".")
        lines = ["no-resolv", "no-hosts", "no-poll", f"listen-address={LOOPBACK}",
                 "bind-interfaces", f"port={port}", "user=root", "group=root"]
        if sc.kind in ("memory", "k8s"):
            # host-record answers are authoritative; local= makes other names in the zone
            # NXDOMAIN here instead of a search for an upstream.
            lines += [f"local=/{zone}/", f"local-ttl={sc.ttl}"]
            lines += [f"host-record={n.rstrip('.')},{ip}" for n, ip in sc.records]
        else:
            lines += [f"server=/{zone}/{LOOPBACK}#{ctx.upstream_port}",
                      # The default of 150 forwards in flight would cap the benchmark.
                      "dns-forward-max=5000",
                      "cache-size=0" if sc.kind == "forward" else "cache-size=10000"]
        conf = workdir / "dnsmasq.conf"
        conf.write_text("\n".join(lines) + "\n")
        return Launch([daemon("dnsmasq") or "dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--pid-file=",
                       "--log-facility=-"], self.cpus, cwd=workdir)


# --- knot-resolver -----------------------------------------------------------------------


class Kresd(Server):
    def unavailable(self) -> str | None:
        if self.workers > 1:
            return ("knot-resolver scales by one kresd process per core (SO_REUSEPORT), a set-up "
                    "the harness does not build; S5 compares interkube's workers with unbound's threads")
        return None if daemon("kresd") else "kresd is not installed (Debian package knot-resolver)"

    def version(self) -> str:
        return _first_line([daemon("kresd") or "kresd", "--version"]).replace("Knot Resolver, version ", "")

    def launch(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> Launch:
        kind = "dns"
        lines = ["log_target('stderr')"]
        if sc.transport == "dot":
            assert ctx.pki is not None
            kind = "tls"
            lines.append(f"net.tls('{ctx.pki.cert}', '{ctx.pki.key}')")
        lines += [
            f"net.listen('{LOOPBACK}', {port}, {{ kind = '{kind}' }})",
            # Nothing may leave the machine: no priming, no trust-anchor updates or time checks
            # (each asks the root), and the root hints point at loopback anyway.
            "for _, m in ipairs({'priming', 'detect_time_skew', 'detect_time_jump', 'ta_update',"
            " 'ta_signal_query', 'ta_sentinel'}) do pcall(modules.unload, m) end",
            "trust_anchors.remove('.')",
            "modules.load('hints > iterate')",
            f"hints.root({{['a.root-servers.net.'] = '{LOOPBACK}'}})",
            f"cache.open(100 * MB, 'lmdb://{workdir}/cache')",
        ]
        zone = sc.zone
        if sc.kind in ("memory", "k8s"):
            if zone.endswith("local."):
                # kresd answers NXDOMAIN for the special-use name local. (RFC 6762) before
                # hints are consulted; a rule that matches first lets cluster.local through.
                lines.append(f"policy.add(policy.suffix(policy.PASS, {{todname('{zone}')}}))")
            lines += [f"hints.add_hosts('{hosts_file(sc, workdir / 'hosts')}')",
                      f"hints.ttl({sc.ttl})"]
        else:
            if sc.kind == "forward":
                # Cache off for the zone; min_ttl 0 so the answer's TTL is the upstream's 0.
                lines += ["cache.min_ttl(0)",
                          f"policy.add(policy.suffix(policy.FLAGS({{'NO_CACHE'}}), "
                          f"{{todname('{zone}')}}))"]
            lines.append(f"policy.add(policy.suffix(policy.STUB({{'{LOOPBACK}@{ctx.upstream_port}'}}), "
                         f"{{todname('{zone}')}}))")
        conf = workdir / "kresd.conf"
        conf.write_text("\n".join(lines) + "\n")
        return Launch([daemon("kresd") or "kresd", "-n", "-q", "-c", str(conf), str(workdir)], self.cpus, cwd=workdir)


# --- CoreDNS -----------------------------------------------------------------------------


class Coredns(Server):
    def _binary(self) -> Path | None:
        from testkit.peers import find_peer

        return find_peer("coredns")

    def unavailable(self) -> str | None:
        if self.workers > 1:
            return "not measured with two cores here"
        if self._binary() is None:
            from testkit.peers import skip_message

            return skip_message("coredns")
        return None

    def version(self) -> str:
        b = self._binary()
        return _first_line([str(b), "-version"]).replace("CoreDNS-", "") if b else "?"

    def skip_reason(self, sc: Scenario, ctx: Context) -> str | None:
        if sc.kind == "k8s" and ctx.kubeconfig is None:
            return ctx.kube_skip or "no kube-apiserver for CoreDNS's kubernetes plugin"
        return None

    def launch(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> Launch:
        conf = workdir / "Corefile"
        conf.write_text(coredns_style_corefile(sc, ctx, port, workdir, f"kubeconfig {ctx.kubeconfig}"))
        binary = self._binary()
        assert binary is not None
        # A clean environment: no proxy variables, no in-cluster KUBERNETES_SERVICE_*.
        return Launch([str(binary), "-conf", str(conf), "-quiet"], self.cpus,
                      env={"PATH": "/usr/bin:/bin", "HOME": str(workdir)}, cwd=workdir)


# --- S0: no DNS server, loadgen's responder ------------------------------------------------


class Responder(Server):
    """loadgen's upstream responder in the server's place: the cheapest possible answers, so
    the QPS it reaches is what the generator can drive on this machine."""

    def unavailable(self) -> str | None:
        return None

    def version(self) -> str:
        return "bench/loadgen/loadgen.c respond"

    def launch(self, sc: Scenario, ctx: Context, port: int, workdir: Path) -> Launch:
        assert ctx.responder_argv is not None
        return Launch([*ctx.responder_argv, "-p", str(port), "-T", "60"], self.cpus, cwd=workdir)


PEERS = ("unbound", "dnsmasq", "kresd", "coredns")
ALL = ("interkube", *PEERS)
_CLASSES: dict[str, type[Server]] = {"interkube": Interkube, "unbound": Unbound,
                                     "dnsmasq": Dnsmasq, "kresd": Kresd, "coredns": Coredns}


def servers_for(sc: Scenario, selected: list[str]) -> list[Server]:
    """The servers a scenario runs: each selected one; S5 runs interkube with one and with
    two workers, and unbound with two threads as the reference for two cores (the other peers
    are listed there too, so that the table says why they are not measured); S0 runs only
    loadgen's responder."""
    if sc.kind == "ceiling":
        return [Responder("loadgen-responder")]
    if sc.workers > 1:
        out: list[Server] = []
        if "interkube" in selected:
            out += [Interkube("interkube", workers=1), Interkube("interkube", workers=sc.workers)]
        out += [_CLASSES[n](n, workers=sc.workers) for n in PEERS if n in selected]
        return out
    return [_CLASSES[n](n) for n in ALL if n in selected]
