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
