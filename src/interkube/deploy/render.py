"""``interkube render``'s work, callable from Python: options in, manifests (plain dicts) out.

:func:`render_server` is what the command writes: RBAC, kubeconfig Secrets, certificates, the
ConfigMap with the Corefile, the Deployment, its PodDisruptionBudget and autoscaler, and the
Service(s); with ``--plan --tls`` also this cluster's DoT front. Everything is computed before
anything is written, so a mistake anywhere (a Corefile error at file:line, an unknown cluster)
leaves nothing behind.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from interkube.corefile.lexer import decode
from interkube.deploy import rbac, workload
from interkube.deploy.corefacts import CorefileFacts, check_mounted, read_corefile
from interkube.deploy.options import RenderError, RenderOptions, parse
from interkube.deploy.workload import Workload
from interkube.errors import ConfigError

Obj = dict[str, Any]

#: The key of a kubeconfig Secret.
KUBECONFIG_KEY = "kubeconfig"


def read_text(path: str) -> str:
    """A Corefile's text; ConfigError naming the file when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the Corefile: {exc.strerror or exc}", path) from exc
    return decode(data, path)


def render_server(options: RenderOptions) -> list[Obj]:
    """Every object ``interkube render`` writes for ``options``, in apply order."""
    if options.plan is not None:
        from interkube.deploy import planconf

        return planconf.render_plan(options)
    if options.corefile is not None:
        text, file = read_text(options.corefile), options.corefile
    else:
        text, file = options.corefile_text or "", "Corefile"
    return render_corefile(options, text, file)


def render_argv(argv: Sequence[str]) -> list[Obj]:
    """:func:`render_server` from command-line words (``["-conf", "Corefile", "--replicas", "3"]``)."""
    return render_server(parse(argv))


def render_corefile(options: RenderOptions, text: str, file: str, *, component: str = "dns",
                    name: str | None = None, dns_policy: str = "Default",
                    secrets: Sequence[Obj] = (), certificates: Sequence[Obj] = (),
                    extra_mounts: Sequence[tuple[str, Obj]] = (), expose: str | None = None) -> list[Obj]:
    """The objects that run ``text`` (named ``file`` in errors) as one highly available
    Deployment. ``extra_mounts`` are (directory, volume source) pairs a generator adds (TLS
    Secrets); ``secrets`` and ``certificates`` go out with the rest."""
    facts = read_corefile(text, file)
    w = Workload(options=options, name=name or options.name, component=component, corefile=text, facts=facts,
                 service_account=name or options.name, dns_policy=dns_policy,
                 expose=expose or options.expose)
    for m in options.mounts:
        workload.add_mount(w, m)
    for path, source in extra_mounts:
        volume = f"v{len(w.volumes)}-{_slug(path)}"[:63]
        w.volumes.append({"name": volume, **source})
        w.mounts.append({"name": volume, "mountPath": path, "readOnly": True})
    kubeconfig_secrets = _kubeconfigs(w, facts)
    check_mounted(facts, workload.mounted_dirs(w))
    _check_file_mounts_unique(w)
    labels = {**w.labels(), "app.kubernetes.io/managed-by": "interkube-render"}
    out = rbac.objects(w.name, options.namespace, labels, rbac.local_needs(facts))
    out += [*kubeconfig_secrets, *secrets, *certificates]
    out += workload.objects(w)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "root"


def kubeconfig_secret_name(name: str, cluster: str) -> str:
    return f"{name}-kubeconfig-{_slug(cluster)}"[:253]


def _kubeconfigs(w: Workload, facts: CorefileFacts) -> list[Obj]:
    """For every stanza that reads a kubeconfig: a Secret (key ``kubeconfig``) mounted so that
    the file appears at the path the stanza names. Stanzas whose kubeconfigs share a directory
    share one projected volume. The Secret itself is written only when ``--kubeconfig
    CLUSTER=FILE`` gives its content; otherwise it is expected to exist (made from
    ``render remote-access``'s token, or by a secrets manager)."""
    given = dict(w.options.kubeconfigs)
    by_dir: dict[str, list[Obj]] = {}
    secrets: list[Obj] = []
    seen: dict[str, str] = {}
    for cfg, cluster in zip(facts.kubernetes, facts.cluster_names, strict=True):
        if not cfg.kubeconfig or not os.path.isabs(cfg.kubeconfig):
            continue  # a relative path is reported by check_mounted
        path = os.path.normpath(cfg.kubeconfig)
        if path in seen:
            continue  # several stanzas may read one kubeconfig (one context each)
        seen[path] = cluster
        secret = kubeconfig_secret_name(w.name, cluster)
        directory, base = os.path.split(path)
        by_dir.setdefault(directory, []).append(
            {"secret": {"name": secret, "items": [{"key": KUBECONFIG_KEY, "path": base}]}})
        if cluster in given:
            secrets.append(kubeconfig_secret(w.options.namespace, secret, w.labels(), _read_kubeconfig(given, cluster)))
    unknown = set(given) - set(seen.values())
    if unknown:
        known = ", ".join(sorted(seen.values())) or "none"
        raise RenderError(f"--kubeconfig {', '.join(sorted(unknown))}: no kubernetes stanza reads a kubeconfig "
                          f"for that cluster (clusters with a kubeconfig: {known})")
    for directory, sources in by_dir.items():
        volume = f"kubeconfig-{_slug(directory)}"[:63]
        w.volumes.append({"name": volume, "projected": {"sources": sources}})
        w.mounts.append({"name": volume, "mountPath": directory, "readOnly": True})
    return secrets


def _read_kubeconfig(given: dict[str, str], cluster: str) -> bytes:
    try:
        return Path(given[cluster]).read_bytes()
    except OSError as exc:
        raise RenderError(f"--kubeconfig {cluster}={given[cluster]}: {exc.strerror or exc}") from exc


def kubeconfig_secret(namespace: str, name: str, labels: dict[str, str], content: bytes) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {**labels, "app.kubernetes.io/managed-by": "interkube-render"}},
            "type": "Opaque", "data": {KUBECONFIG_KEY: base64.b64encode(content).decode()}}


def _check_file_mounts_unique(w: Workload) -> None:
    seen: dict[str, str] = {}
    for m in w.mounts:
        if m["mountPath"] in seen:
            raise RenderError(f"two volumes are mounted at {m['mountPath']} ({seen[m['mountPath']]} and "
                              f"{m['name']}): give them different directories")
        seen[m["mountPath"]] = m["name"]


__all__ = ["RenderError", "RenderOptions", "kubeconfig_secret", "read_text", "render_argv", "render_corefile",
           "render_server"]
