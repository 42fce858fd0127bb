"""The parts around the DNS server: its ``/ready`` endpoint, the admission webhook's
configuration, and ``interkube proxy``'s nftables table and HTTP endpoint."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from interkube.doctor.findings import Finding, fail, note, ok, warn
from interkube.errors import InterkubeError

if TYPE_CHECKING:
    from interkube.doctor.cluster import Target
    from interkube.doctor.corefile import Corefile

#: The label interkube's rendered objects carry (interkube render webhook).
OWN_SELECTOR = {"app.kubernetes.io/name": "interkube"}
#: The nftables tables interkube proxy programs.
PROXY_TABLES = (("ip", "interkube"), ("ip6", "interkube"))


async def http_get(url: str, timeout: float, netns: str | None = None) -> tuple[int, str]:
    """GET ``url``: the status and the body; from inside ``netns`` when given."""
    if netns:
        return await _http_get_in(netns, url, timeout)
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False) as session, \
            session.get(url) as resp:
        return resp.status, await resp.text()


async def _http_get_in(netns: str, url: str, timeout: float) -> tuple[int, str]:
    """GET ``url`` (plain HTTP/1.0) over a socket made inside ``netns`` (interkube.lab.netns)."""
    import socket
    from urllib.parse import urlsplit

    from interkube.lab.netns import socket_in

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket_in(netns, socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(f"GET {parts.path or '/'} HTTP/1.0\r\nHost: {parts.netloc}\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    return (int(status[1]) if len(status) > 1 and status[1].isdigit() else 0), body.decode(errors="replace")


def ready_url(address: str) -> str:
    """The URL of the ready plugin's address (``:8181`` is every address: asked on loopback)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/ready"


async def check_ready(model: Corefile | None, urls: Sequence[str], timeout: float) -> list[Finding]:
    """GET each ``/ready``: 200 is ok, 503 names the plugins (clusters) not ready. URLs given on the
    command line must answer; the one derived from the Corefile is a note when nothing listens (the
    doctor may run before the server)."""
    given = list(urls)
    derived = []
    if not given and model is not None and model.ready is not None:
        derived.append(ready_url(model.ready[0]))
    out: list[Finding] = []
    for url in given + derived:
        try:
            status, body = await http_get(url, timeout)
        except (TimeoutError, OSError) as exc:
            if url in derived:
                out.append(note("ready", url, f"nothing answers ({exc}): interkube is not running here, not checked"))
            else:
                out.append(fail("ready", url, f"nothing answers: {exc}",
                                "check that interkube runs and its `ready` plugin listens there"))
            continue
        if status == 200:
            out.append(ok("ready", url, "200 OK: every plugin (every cluster's kubernetes stanza) is ready"))
        else:
            waiting = ", ".join(line for line in body.split() if line) or "(no names)"
            out.append(fail("ready", url, f"HTTP {status}: not ready: {waiting}",
                            "a kubernetes stanza not ready has not listed its cluster yet: check its API access "
                            "(interkube doctor --context) and interkube's log"))
    if model is not None and model.ready is None and not given:
        out.append(note("ready", model.path, "the Corefile has no `ready` plugin: readiness not checked",
                        "add `ready` so that Kubernetes (and the doctor) can tell when every cluster is synced"))
    return out


# --- the admission webhook --------------------------------------------------------------------------


def _b64(text: str | bytes | None) -> bytes:
    if not text:
        return b""
    return base64.b64decode(text)


async def check_webhook_configuration(client: Any, config: Any, subject: str) -> list[Finding]:
    """One MutatingWebhookConfiguration: per entry, the caBundle and the Service it calls, and the
    serving certificate (the ``NAME-tls`` Secret interkube render writes) against the caBundle."""
    name = config.metadata.name
    out: list[Finding] = []
    checked: set[tuple[str, str]] = set()
    for hook in config.webhooks or ():
        where = f"{subject} webhook {name}/{hook.name}"
        cas, found = _ca_bundle(config, hook, where)
        out += found
        svc = hook.clientConfig.service
        if svc is None:
            out.append(note("webhook.service", where, f"called at a URL ({hook.clientConfig.url}): not checked"))
        elif (svc.namespace, svc.name) not in checked:
            checked.add((svc.namespace, svc.name))
            out += await _webhook_service(client, svc, where, cas)
    return out


def _ca_bundle(config: Any, hook: Any, where: str) -> tuple[list[Any] | None, list[Finding]]:
    """The caBundle's certificates (None when there are none) and the finding about it."""
    from cryptography import x509

    bundle = _b64(hook.clientConfig.caBundle)
    if not bundle:
        inject = (config.metadata.annotations or {}).get("cert-manager.io/inject-ca-from")
        return None, [fail("webhook.ca-bundle", where, "no caBundle: the API server cannot verify the webhook" + (
            f" (cert-manager's cainjector has not injected {inject} yet)" if inject else ""),
            "run cert-manager (its cainjector fills caBundle) or render with --certs generate")]
    try:
        cas = x509.load_pem_x509_certificates(bundle)
    except ValueError as exc:
        return None, [fail("webhook.ca-bundle", where, f"caBundle is not PEM certificates: {exc}",
                           "render the webhook again")]
    return cas, [ok("webhook.ca-bundle", where, f"caBundle holds {len(cas)} certificate(s): "
                    + ", ".join(c.subject.rfc4514_string() for c in cas))]


async def _webhook_service(client: Any, svc: Any, where: str, cas: list[Any] | None) -> list[Finding]:
    """The Service a webhook entry calls, and (with a caBundle) the serving certificate."""
    from cryptography import x509
    from lightkube import ApiError
    from lightkube.resources.core_v1 import Secret, Service

    from interkube.doctor.upstreams import certificate_findings

    try:
        await client.get(Service, svc.name, namespace=svc.namespace)
    except ApiError as exc:
        return [fail("webhook.service", where, f"Service {svc.namespace}/{svc.name}: HTTP {exc.status.code}",
                     "apply the Service of `interkube render webhook`")]
    out = [ok("webhook.service", where, f"Service {svc.namespace}/{svc.name} exists")]
    if cas is None:
        return out
    secret_name = f"{svc.name}-tls"
    try:
        secret = await client.get(Secret, secret_name, namespace=svc.namespace)
    except ApiError as exc:
        return [*out, note("webhook.tls", where, f"cannot read the serving certificate Secret "
                           f"{svc.namespace}/{secret_name}: HTTP {exc.status.code}: not checked")]
    try:
        cert = x509.load_pem_x509_certificate(_b64((secret.data or {}).get("tls.crt")))
    except ValueError as exc:
        return [*out, fail("webhook.tls-name", where, f"Secret {svc.namespace}/{secret_name} holds no certificate: "
                           f"{exc}", "render the webhook again (or check cert-manager's Certificate)")]
    return out + certificate_findings(cert, f"{where} serving certificate", f"{svc.name}.{svc.namespace}.svc",
                                      cas, "the caBundle", prefix="webhook")


async def check_webhooks(kubeconfig: str, targets: Sequence[Target], name: str | None,
                         timeout: float) -> list[Finding]:
    import httpx2
    from lightkube import AsyncClient
    from lightkube.config.kubeconfig import KubeConfig
    from lightkube.core.exceptions import ConfigError

    try:
        kube = KubeConfig.from_file(kubeconfig)
    except (ConfigError, OSError, ValueError, KeyError, TypeError):
        return []  # the cluster checks report it
    out: list[Finding] = []
    for target in targets:
        subject = f"context {target.context}" if target.context else f"the current context of {kubeconfig}"
        try:
            client = AsyncClient(kube.get(target.context or None), trust_env=False, timeout=httpx2.Timeout(timeout))
        except (ConfigError, KeyError, ValueError):
            continue
        try:
            out += await _webhooks_of(client, subject, name)
        finally:
            await client.close()
    return out


async def _webhooks_of(client: Any, subject: str, name: str | None) -> list[Finding]:
    import httpx2
    from lightkube import ApiError
    from lightkube.resources.admissionregistration_v1 import MutatingWebhookConfiguration

    try:
        if name:
            configs = [await client.get(MutatingWebhookConfiguration, name)]
        else:
            configs = [c async for c in client.list(MutatingWebhookConfiguration, labels=OWN_SELECTOR)]
    except ApiError as exc:
        if name or exc.status.code != 403:
            return [fail("webhook.configuration", subject,
                         f"MutatingWebhookConfiguration {name or '(interkube)'}: HTTP {exc.status.code}",
                         "apply `interkube render webhook`'s objects, or name it with --webhook")]
        return [note("webhook.configuration", subject, "may not list MutatingWebhookConfigurations: not checked")]
    except (httpx2.HTTPError, OSError):
        return []  # the cluster checks report an API that does not answer
    if not configs:
        return [note("webhook.configuration", subject,
                     "no MutatingWebhookConfiguration labelled app.kubernetes.io/name=interkube: "
                     "the DNS injection webhook is not installed")]
    out: list[Finding] = []
    for config in configs:
        out += await check_webhook_configuration(client, config, subject)
    return out


# --- interkube proxy -----------------------------------------------------------------------------------


async def run_process(argv: Sequence[str], timeout: float) -> tuple[int | None, str, str]:
    """Run ``argv``: exit status (None when it was killed after ``timeout`` seconds), stdout and
    stderr. OSError when it cannot be started."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, "", ""
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


async def proxy_tables(netns: str | None, timeout: float) -> list[tuple[str, int]] | None:
    """(family table, chain count) of the proxy's tables present, or None when nft cannot be run."""
    if shutil.which("nft") is None:
        return None
    found = []
    for family, table in PROXY_TABLES:
        status, text, _ = await run_process(in_netns(netns, ["nft", "-j", "list", "table", family, table]), timeout)
        if status != 0:
            continue
        try:
            items = json.loads(text).get("nftables", [])
        except ValueError:
            items = []
        found.append((f"{family} {table}", sum(1 for i in items if "chain" in i)))
    return found


def status_finding(base: str, status: dict[str, Any]) -> Finding:
    """What the proxy's /status says it programmed (docs/proxy.md): per cluster its Services and
    endpoints; Services without a ready endpoint reject connections."""
    clusters = status.get("clusters") or {}
    services = status.get("services") or []
    parts = [f"cluster {name}: {c.get('services', 0)} services, {c.get('endpoints', 0)} endpoints"
             + (f", down ({c['down']})" if c.get("down") else "")
             for name, c in clusters.items() if isinstance(c, dict)]
    rejecting = [f"{s.get('service')} {s.get('vip')}:{s.get('port')}" for s in services
                 if isinstance(s, dict) and s.get("rejects")]
    evidence = "; ".join(parts) or "no cluster"
    if not status.get("programmed"):
        return fail("proxy.status", base, f"tables not programmed: {status.get('last_error') or 'no sync yet'}",
                    "read the proxy's log: nft refused its transaction or no cluster answered")
    if rejecting:
        return warn("proxy.status", base, f"{evidence}; without a ready endpoint (rejected): {', '.join(rejecting)}",
                    "check the remote Services' pods")
    return ok("proxy.status", base, evidence)


async def check_proxy(url: str | None, netns: str | None, timeout: float) -> list[Finding]:
    """The proxy's tables in its network namespace (``netns``, else this one), its /ready and its
    /status (asked from inside ``netns``); skipped with a note when this build has no proxy and
    none is named."""
    built = importlib.util.find_spec("interkube.proxy") is not None
    where = f"netns {netns}" if netns else "this network namespace"
    if not built and url is None:
        return [note("proxy", where, "`interkube proxy` is not part of this build: not checked")]
    out: list[Finding] = []
    tables = await proxy_tables(netns, timeout)
    if tables is None:
        out.append(note("proxy.table", where, "nft is not installed: the tables are not read"))
    elif tables:
        out.append(ok("proxy.table", where, ", ".join(f"table {t} ({n} chains)" for t, n in tables)))
    elif url is not None:
        out.append(fail("proxy.table", where, "no table ip interkube or ip6 interkube",
                        "start `interkube proxy` here (it programs its tables at start), or look at its log"))
    else:
        out.append(note("proxy.table", where, "no interkube proxy table: the proxy does not run here"))
    if url is None:
        return out
    base = url.rstrip("/")
    try:
        status, body = await http_get(f"{base}/ready", timeout, netns)
    except (TimeoutError, OSError, InterkubeError) as exc:
        return [*out, fail("proxy.ready", base, f"nothing answers: {exc}", "check that `interkube proxy` runs with "
                           "`http` at that address")]
    if status == 200:
        out.append(ok("proxy.ready", base, f"/ready: {body.strip() or 'OK'}"))
    else:
        out.append(fail("proxy.ready", base, f"/ready answers HTTP {status}: {body.strip()}",
                        "a cluster whose API is not reachable keeps its last rules: check the proxy's access"))
    try:
        status, body = await http_get(f"{base}/status", timeout, netns)
        summary = json.loads(body) if status == 200 else None
    except (TimeoutError, OSError, ValueError, InterkubeError):
        summary = None
    if isinstance(summary, dict):
        out.append(status_finding(base, summary))
    else:
        out.append(warn("proxy.status", base, "/status did not answer JSON", "check the proxy's version"))
    return out
