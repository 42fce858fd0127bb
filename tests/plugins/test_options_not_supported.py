"""CoreDNS options that interkube does not implement are refused by name, as not supported (not
as a wrong argument count or an unknown option), at their file:line."""

from __future__ import annotations

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.server.runtime import build


@pytest.mark.parametrize("body, line, words", [
    ("tls {\n  acme dns.example.org\n }", 2, "tls: automatic certificates (ACME"),
    ("ready {\n  monitor continuously\n }", 3, "ready: option 'monitor' is not supported"),
    ("file db.example {\n  reload_by_mtime\n }", 3, "file: option 'reload_by_mtime' is not supported"),
    ("kubernetes cluster.local {\n  zonal\n }", 3, "kubernetes: option 'zonal' is not supported"),
    ("loadbalance weighted w {\n  prefer 10.0.0.0/8\n }", 3,
     "option 'prefer' with the weighted policy is not supported"),
])
def test_named_and_said_not_supported(body: str, line: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(parse_text(f".:53 {{\n {body}\n}}\n", "Corefile"), "Corefile", Services())
    message = str(info.value)
    assert message.startswith(f"Corefile:{line}: ") and words in message and "not supported" in message, message
