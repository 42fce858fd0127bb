"""One directive out of Corefile text, for tests of a plugin's parse()::

    config = parse(directive("cache 30 {\\n prefetch 10\\n }"))
"""

from __future__ import annotations

from interkube.corefile.parser import Directive, parse_text


def directive(body: str, key: str = ".") -> Directive:
    """The first directive of the server block ``KEY { BODY }`` in a file named "Corefile",
    BODY starting on its line 2 (where errors about it point)."""
    return parse_text(f"{key} {{\n{body}\n}}\n", "Corefile")[0].directives[0]
