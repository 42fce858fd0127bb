"""Every Corefile example in the repository's docs parses, builds, and is not an open resolver.

Examples are what users copy. A forwarding block (forward, merge) in an example must either
listen on loopback only or carry an `acl` that ends by blocking (or dropping) everyone it did not
allow; otherwise a copied example would recurse for anybody who can reach it.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from interkube.corefile.parser import ServerBlock, parse_text

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("src/interkube/plugins/*/README.md")])
FENCE = re.compile(r"^(```|~~~)\s*corefile\s*\n(.*?)^\1", re.M | re.S)
FORWARDING = {"forward", "merge"}


def examples() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for i, m in enumerate(FENCE.finditer(doc.read_text())):
            out.append((f"{doc.relative_to(ROOT)}#{i + 1}", m.group(2)))
    return out


def loopback_only(block: ServerBlock) -> bool:
    binds = [a.text for d in block.directives if d.name == "bind" for a in d.args]
    if not binds:
        return False
    try:
        return all(ipaddress.ip_address(b).is_loopback for b in binds)
    except ValueError:
        return False  # an interface name: cannot tell


def closes_with_refusal(block: ServerBlock) -> bool:
    for d in block.directives:
        if d.name == "acl" and d.block:
            last = d.block[-1]
            if last.name in ("block", "drop", "filter") and not any(a.text == "net" for a in last.args):
                return True
    return False


@pytest.mark.parametrize(("where", "text"), examples(), ids=[w for w, _ in examples()])
def test_example_is_not_an_open_resolver(where: str, text: str) -> None:
    blocks = parse_text(text, where, env={})
    for block in blocks:
        if not any(d.name in FORWARDING for d in block.directives):
            continue
        assert loopback_only(block) or closes_with_refusal(block), (
            f"{where}: block {' '.join(k.text for k in block.keys)} forwards for anyone; "
            "bind it to loopback or end its acl with `block`")


def test_there_are_examples_to_check() -> None:
    assert len(examples()) >= 20


# --- links and citations: the docs must read the same in a clone as on the PyPI page --------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
CODE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
#: A citation of the scenario texts by number, or a path into a checkout's sibling folder.
CITATION = re.compile(r"\bseeds? \d{3}\b|shared/(?:seeds|DESIGN)", re.I)


def anchors(doc: Path) -> set[str]:
    """The fragment of every heading, as GitHub makes them (a repeat gets -1, -2, ...)."""
    out: set[str] = set()
    for heading in HEADING.findall(CODE.sub("", doc.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in out:
            n += 1
            candidate = f"{slug}-{n}"
        out.add(candidate)
    return out


def test_every_relative_link_in_the_docs_resolves_inside_the_repository() -> None:
    broken = []
    for doc in DOCS:
        for target in LINK.findall(CODE.sub("", doc.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            where = f"{doc.relative_to(ROOT)}: {target}"
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{where}: no such file in the repository")
            elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{where}: no heading #{fragment}")
    assert not broken, "\n".join(broken)


def test_scenarios_are_cited_by_name_not_by_number() -> None:
    sources = [*DOCS, *ROOT.glob("src/interkube/**/*.py"), *ROOT.glob("bench/**/*.py"),
               *ROOT.glob("src/interkube/server/default/*"), *ROOT.glob("examples/**/*.yaml")]
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in sources if path.is_file() and path.suffix not in (".pyc", ".so")
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if CITATION.search(line)]
    assert not found, "name the scenario of docs/scenarios.md instead:\n" + "\n".join(found)


def test_the_built_in_default_names_scenarios_that_docs_describe() -> None:
    from interkube.server.default import banner

    titles = {h for h in HEADING.findall((ROOT / "docs" / "scenarios.md").read_text())}
    named = [re.sub(r" \(.*\)$", "", line[:-1]) for line in banner().splitlines()
             if line.endswith(":") and not line.startswith((" ", "Try"))]
    assert named and set(named) <= titles, (named, titles)
