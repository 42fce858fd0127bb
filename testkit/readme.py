"""The Corefile examples of a plugin's README, made runnable on a test's own port.

A README example is written as a user would (``example.org {``, ``.:1053 {``, ``tls://.:5553
{``, an upstream at ``127.0.0.1:5300``); a test starts it as written but for the port::

    texts = readme_examples("whoami")
    corefile = on_port(texts[0], port)
"""

from __future__ import annotations

import re
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "src" / "interkube" / "plugins"
_FENCE = re.compile(r"^(```|~~~)\s*corefile\s*\n(.*?)^\1", re.M | re.S)
#: A server key: an optional scheme, the zone, an optional port.
_KEY = re.compile(r"^(?P<scheme>[a-z]+://)?(?P<zone>[^\s:{]+)(?::\d+)?$")


def readme_examples(plugin: str) -> list[str]:
    """The ``corefile`` fenced blocks of ``src/interkube/plugins/<plugin>/README.md``, in order."""
    text = (PLUGINS / plugin / "README.md").read_text()
    return [m.group(2) for m in _FENCE.finditer(text)]


def on_port(corefile: str, port: int) -> str:
    """``corefile`` with every server key on ``port`` (its own port, if it had one, replaced)."""
    out = []
    depth = 0
    for line in corefile.splitlines():
        stripped = line.strip()
        if depth == 0 and stripped.endswith("{"):
            keys = stripped[:-1].replace(",", " ").split()
            ported = []
            for key in keys:
                m = _KEY.match(key)
                if m is None:
                    raise ValueError(f"not a server key: {key!r}")
                ported.append(f"{m.group('scheme') or ''}{m.group('zone')}:{port}")
            line = " ".join(ported) + " {"
        depth += line.count("{") - line.count("}")
        out.append(line)
    return "\n".join(out) + "\n"


__all__ = ["on_port", "readme_examples"]
