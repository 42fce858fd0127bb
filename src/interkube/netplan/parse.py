"""Plan files (YAML or JSON) to :class:`~interkube.netplan.model.Plan`; no rules, no I/O but reading.

The file is composed into YAML nodes rather than loaded into Python values, for two reasons:
every node carries its line, so an error can name file, path and line; and scalars keep the
text the user wrote, so ``10:20`` is not turned into a sexagesimal integer by YAML 1.1.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import yaml

from interkube.errors import PlanError
from interkube.netplan.model import (
    Address,
    AddressRange,
    Cluster,
    ClusterDns,
    ExternalNetwork,
    Forward,
    Link,
    LinkKind,
    Networking,
    Origin,
    PerNodePrefix,
    Plan,
)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

# The base loaders resolve no implicit types: every scalar stays a string (this module reads the
# text itself), and skipping the type resolvers is most of what makes composing fast.
_Loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)

# DNS-1123 label: what Kubernetes accepts as a namespace name; cluster names follow the same
# shape so that they can become DNS labels later (cluster.<name>, and the merged domain of the
# scenario Discovery across clusters, VIP proxying and the merged domain).
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_INFERABLE = ("networking", "nodes", "pods", "services", "dns")

_TOP_KEYS = ("version", "clusters", "external", "links")
_CLUSTER_KEYS = ("name", "networking", "nodes", "pods", "services", "per_node_prefix", "dns",
                 "namespaces", "forward", "context", "inferred")
_EXTERNAL_KEYS = ("name", "kind", "cidrs")
_LINK_KEYS = ("between", "kind", "name", "nat", "pod_traffic", "service_proxy")


def load_plan(path: str | Path) -> Plan:
    """Read and parse a plan file (``-`` is standard input); every problem names the file."""
    name = str(path)
    if name == "-":
        import sys

        return parse_plan(sys.stdin.read(), file="<stdin>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan: {exc.strerror or exc}", file=name) from exc
    except UnicodeDecodeError as exc:
        raise PlanError(f"plan is not UTF-8 text: {exc.reason}", file=name) from exc
    return parse_plan(text, file=name)


def parse_plan(text: str, file: str | None = None) -> Plan:
    """Parse plan text (YAML, or JSON which is read as YAML) into a Plan."""
    if text.lstrip().startswith(("{", "[")):
        # JSON allows tabs as whitespace where YAML does not; outside strings they are only
        # whitespace and inside strings JSON forbids raw tabs, so this keeps lines and meaning.
        text = text.replace("\t", " ")
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PlanError(f"not valid YAML/JSON: {exc.problem or exc}", file=file, line=line) from exc
    except yaml.YAMLError as exc:
        raise PlanError(f"not valid YAML/JSON: {exc}", file=file) from exc
    reader = _Reader(file)
    if root is None:
        raise PlanError("the plan is empty", file=file, line=1)
    return reader.plan(root)


def _is_null(node: yaml.Node) -> bool:
    """An unquoted empty value, ``~`` or ``null`` (as in ``pods:`` with nothing after it)."""
    return isinstance(node, yaml.ScalarNode) and not node.style and node.value in ("", "~", "null")


class _Reader:
    """Turns YAML nodes into model values, raising PlanError with file, path and line."""

    def __init__(self, file: str | None) -> None:
        self.file = file

    # --- errors and locations ------------------------------------------------------------

    def fail(self, message: str, node: yaml.Node, path: str) -> PlanError:
        return PlanError(message, file=self.file, line=node.start_mark.line + 1, path=path or None)

    @staticmethod
    def origin(node: yaml.Node, path: str) -> Origin:
        return Origin(path, node.start_mark.line + 1)

    # --- generic shapes ------------------------------------------------------------------

    def mapping(self, node: yaml.Node, path: str, keys: Iterable[str],
                required: Iterable[str] = ()) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail("expected a mapping", node, path)
        allowed = tuple(keys)
        found: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key_path = f"{path}.{key}" if path else str(key)
            if key not in allowed:
                raise self.fail(f"unknown key {key!r}; expected one of: {', '.join(allowed)}",
                                key_node, key_path)
            if key in found:
                raise self.fail(f"key {key!r} given twice", key_node, key_path)
            found[key] = value_node
        for key in required:
            if key not in found:
                raise self.fail(f"missing required key {key!r}", node, path)
        return found

    def sequence(self, node: yaml.Node, path: str, item: Callable[[yaml.Node, str], T]) -> tuple[T, ...]:
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail("expected a list", node, path)
        return tuple(item(child, f"{path}[{i}]") for i, child in enumerate(node.value))

    def scalar(self, node: yaml.Node, path: str) -> str:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail("expected a single value", node, path)
        return str(node.value)

    def boolean(self, node: yaml.Node, path: str) -> bool:
        text = self.scalar(node, path).lower()
        # JSON and YAML 1.2 spellings only: "yes"/"on" are too easy to write by accident.
        if text == "true":
            return True
        if text == "false":
            return False
        raise self.fail(f"expected true or false, got {node.value!r}", node, path)

    def integer(self, node: yaml.Node, path: str, low: int, high: int) -> int:
        text = self.scalar(node, path)
        try:
            value = int(text, 10)
        except ValueError:
            raise self.fail(f"expected a whole number, got {text!r}", node, path) from None
        if not low <= value <= high:
            raise self.fail(f"{value} is outside {low}..{high}", node, path)
        return value

    def label(self, node: yaml.Node, path: str, what: str) -> str:
        text = self.scalar(node, path)
        if not _LABEL.match(text):
            raise self.fail(f"{what} {text!r} is not a DNS label (lower-case letters, digits, '-', "
                            "at most 63, starting and ending with a letter or digit)", node, path)
        return text

    def choice(self, node: yaml.Node, path: str, enum_type: type[E]) -> E:
        text = self.scalar(node, path)
        for member in enum_type:
            if member.value == text:
                return member
        values = ", ".join(str(m.value) for m in enum_type)
        raise self.fail(f"expected one of {values}, got {text!r}", node, path)

    def network(self, node: yaml.Node, path: str) -> AddressRange:
        text = self.scalar(node, path).strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(text, strict=False)}?"
            except ValueError:
                pass
            raise self.fail(f"bad CIDR {text!r}: {exc}{hint}", node, path) from None
        return AddressRange(network, self.origin(node, path))

    def address(self, node: yaml.Node, path: str) -> Address:
        text = self.scalar(node, path).strip()
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise self.fail(f"bad IP address {text!r}", node, path) from None
        return Address(ip, self.origin(node, path))

    # --- the plan ------------------------------------------------------------------------

    def plan(self, root: yaml.Node) -> Plan:
        top = self.mapping(root, "", _TOP_KEYS)
        if "version" in top and self.integer(top["version"], "version", 1, 1000) != 1:
            raise self.fail("only plan version 1 is understood", top["version"], "version")
        clusters = self.sequence(top["clusters"], "clusters", self.cluster) if "clusters" in top else ()
        external = self.sequence(top["external"], "external", self.external) if "external" in top else ()
        links = self.sequence(top["links"], "links", self.link) if "links" in top else ()
        self.check_names(clusters, external)
        plan = Plan(clusters=clusters, external=external, links=links, source=self.file)
        self.check_references(plan)
        return plan

    def cluster(self, node: yaml.Node, path: str) -> Cluster:
        keys = self.mapping(node, path, _CLUSTER_KEYS, required=("name",))
        name = self.label(keys["name"], f"{path}.name", "cluster name")
        ranges = {role: self.sequence(keys[role], f"{path}.{role}", self.network) if role in keys else ()
                  for role in ("nodes", "pods", "services")}
        return Cluster(
            name=name,
            origin=self.origin(node, path),
            networking=(self.choice(keys["networking"], f"{path}.networking", Networking)
                        if "networking" in keys else Networking.ROUTED),
            nodes=ranges["nodes"],
            pods=ranges["pods"],
            services=ranges["services"],
            per_node_prefix=(self.per_node_prefix(keys["per_node_prefix"], f"{path}.per_node_prefix")
                             if "per_node_prefix" in keys else PerNodePrefix()),
            dns=self.dns(keys["dns"], f"{path}.dns") if "dns" in keys else None,
            namespaces=(self.sequence(keys["namespaces"], f"{path}.namespaces",
                                      lambda n, p: self.label(n, p, "namespace"))
                        if "namespaces" in keys else ()),
            forward=self.sequence(keys["forward"], f"{path}.forward", self.forward) if "forward" in keys else (),
            context=self.scalar(keys["context"], f"{path}.context") if "context" in keys else None,
            inferred=self.sequence(keys["inferred"], f"{path}.inferred", self.inferred) if "inferred" in keys else (),
        )

    def per_node_prefix(self, node: yaml.Node, path: str) -> PerNodePrefix:
        keys = self.mapping(node, path, ("ipv4", "ipv6"))
        return PerNodePrefix(
            ipv4=self.integer(keys["ipv4"], f"{path}.ipv4", 0, 32) if "ipv4" in keys else None,
            ipv6=self.integer(keys["ipv6"], f"{path}.ipv6", 0, 128) if "ipv6" in keys else None,
        )

    def dns(self, node: yaml.Node, path: str) -> ClusterDns:
        keys = self.mapping(node, path, ("service", "endpoints"))
        return ClusterDns(
            service=self.address(keys["service"], f"{path}.service") if "service" in keys else None,
            endpoints=(self.sequence(keys["endpoints"], f"{path}.endpoints", self.address)
                       if "endpoints" in keys else ()),
        )

    def forward(self, node: yaml.Node, path: str) -> Forward:
        keys = self.mapping(node, path, ("namespace", "to"), required=("namespace", "to"))
        return Forward(
            namespace=self.label(keys["namespace"], f"{path}.namespace", "namespace"),
            to=self.scalar(keys["to"], f"{path}.to"),
            origin=self.origin(node, path),
        )

    def inferred(self, node: yaml.Node, path: str) -> str:
        text = self.scalar(node, path)
        if text not in _INFERABLE:
            raise self.fail(f"expected one of {', '.join(_INFERABLE)}, got {text!r}", node, path)
        return text

    def external(self, node: yaml.Node, path: str) -> ExternalNetwork:
        keys = self.mapping(node, path, _EXTERNAL_KEYS, required=("name", "cidrs"))
        return ExternalNetwork(
            name=self.label(keys["name"], f"{path}.name", "external network name"),
            origin=self.origin(node, path),
            kind=self.scalar(keys["kind"], f"{path}.kind") if "kind" in keys else "network",
            cidrs=self.sequence(keys["cidrs"], f"{path}.cidrs", self.network),
        )

    def link(self, node: yaml.Node, path: str) -> Link:
        keys = self.mapping(node, path, _LINK_KEYS, required=("between",))
        kind = self.choice(keys["kind"], f"{path}.kind", LinkKind) if "kind" in keys else LinkKind.PEERING
        between = self.sequence(keys["between"], f"{path}.between", self.scalar)
        if len(set(between)) != len(between):
            raise self.fail("a member is named twice", keys["between"], f"{path}.between")
        if kind is LinkKind.HUB and len(between) < 2:
            raise self.fail("a hub needs at least two members", keys["between"], f"{path}.between")
        if kind is not LinkKind.HUB and len(between) != 2:
            raise self.fail(f"a {kind.value} link joins exactly two members; use kind: hub for more",
                            keys["between"], f"{path}.between")
        return Link(
            between=between,
            origin=self.origin(node, path),
            kind=kind,
            name=self.scalar(keys["name"], f"{path}.name") if "name" in keys else None,
            nat=self.boolean(keys["nat"], f"{path}.nat") if "nat" in keys else False,
            pod_traffic=self.boolean(keys["pod_traffic"], f"{path}.pod_traffic") if "pod_traffic" in keys else False,
            service_proxy=(self.boolean(keys["service_proxy"], f"{path}.service_proxy")
                           if "service_proxy" in keys else False),
        )

    # --- whole-plan consistency ----------------------------------------------------------

    def check_names(self, clusters: tuple[Cluster, ...], external: tuple[ExternalNetwork, ...]) -> None:
        seen: dict[str, str] = {}
        items: tuple[Cluster | ExternalNetwork, ...] = (*clusters, *external)
        for item in items:
            if item.name in seen:
                raise PlanError(f"name {item.name!r} is already used by {seen[item.name]}",
                                file=self.file, line=item.origin.line, path=f"{item.origin.path}.name")
            seen[item.name] = item.origin.path

    def check_references(self, plan: Plan) -> None:
        clusters = {c.name for c in plan.clusters}
        members = clusters | {e.name for e in plan.external}
        for link in plan.links:
            for i, member in enumerate(link.between):
                if member not in members:
                    raise PlanError(f"link member {member!r} is neither a cluster nor an external network",
                                    file=self.file, line=link.origin.line, path=f"{link.origin.path}.between[{i}]")
        for cluster in plan.clusters:
            for fwd in cluster.forward:
                if fwd.to not in clusters:
                    raise PlanError(f"forward target {fwd.to!r} is not a cluster of this plan",
                                    file=self.file, line=fwd.origin.line, path=f"{fwd.origin.path}.to")
                if fwd.to == cluster.name:
                    raise PlanError("a cluster cannot forward a namespace to itself",
                                    file=self.file, line=fwd.origin.line, path=f"{fwd.origin.path}.to")
