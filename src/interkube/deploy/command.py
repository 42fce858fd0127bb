"""``interkube render``: manifests to run interkube in a cluster, written all at once or not at all.

    interkube render [-conf COREFILE | --plan PLAN --cluster NAME] [options] -o DIR|-
    interkube render remote-access [options] -o DIR|-
    interkube render webhook [options] -o DIR|-          (when interkube.webhook is built)
    interkube render sidecar [options] -o DIR|-          (split DNS beside a StatefulSet's pods)

Heavy imports happen inside the functions, so that ``interkube --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

_HELP = "write Kubernetes manifests that run interkube highly available in a cluster"
_DESCRIPTION = """\
Write the manifests that run interkube in one cluster: ServiceAccount and RBAC (exactly what the
Corefile's plugins read), the ConfigMap with the Corefile, a Deployment (replicas on different
nodes, spread over zones, probes on health and ready, non-root, read-only root filesystem), a
PodDisruptionBudget, an optional HorizontalPodAutoscaler and the Service(s).

The Corefile is given (-conf) or generated from an address plan (--plan, --cluster). It is
checked by interkube's own parser first: an error names file:line and nothing is written.
-o DIR writes a kustomize directory (kustomization.yaml and one file per kind), replaced whole;
-o - writes one YAML stream. See docs/deploy.md.
"""

#: Other render targets: (subcommand, module, help). A module that is not built is left out.
_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("remote-access", "interkube.deploy.remote",
     "for a remote cluster: the read-only ServiceAccount, token Secret and ClusterRole its kubeconfig is made of"),
    ("webhook", "interkube.webhook.manifests",
     "the pod DNS injection webhook: configuration, Service, Deployment, PDB, certificate"),
    ("sidecar", "interkube.deploy.sidecar",
     "a split-DNS resolver beside each pod of a StatefulSet: container, ConfigMap, dnsConfig, Role"),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``render`` subcommand and its targets."""
    from interkube.deploy import options

    # allow_abbrev=False: an option misspelt as a prefix of another (--replica) is an error, not
    # silently that other option.
    p = subparsers.add_parser("render", help=_HELP, description=_DESCRIPTION, allow_abbrev=False,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_arguments(p)
    p.set_defaults(func=run_server)
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=False,
                               description="instead of the DNS server (options above do not apply)")
    for name, module_name, help_text in _TARGETS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):  # not built in this tree yet
                continue
            raise
        sub = targets.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.add_arguments(sub)
        if not any(a.dest == "output" for a in sub._actions):
            sub.add_argument("-o", "--output", required=True, metavar="DIR|-",
                             help="a kustomize directory to write (replaced whole), or - for one YAML stream")
        sub.set_defaults(func=_target(module.render))


def run_server(args: argparse.Namespace) -> int:
    from interkube.deploy.options import RenderError, from_args
    from interkube.deploy.output import write_manifests
    from interkube.deploy.render import render_server

    options = from_args(args)  # checks every option before -o: a usage error says the most useful thing
    if not args.output:
        raise RenderError("-o DIR or -o - is required: where to write the manifests")
    write_manifests(render_server(options), args.output)
    return 0


def _target(render: Callable[[argparse.Namespace], list[dict[str, Any]] | None]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from interkube.deploy.output import write_manifests

        objects = render(args)  # may do its own work (e.g. write a kubeconfig) and return nothing
        if objects is None:  # it wrote its output itself (the sidecar's kustomize Component)
            return 0
        if args.output:
            write_manifests(objects, args.output)
        return 0

    return run
