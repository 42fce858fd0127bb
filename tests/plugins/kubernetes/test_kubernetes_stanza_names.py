"""Two kubernetes stanzas of one configuration may not give one cluster name to two sources:
refused at the second stanza's file:line, naming the first's, before anything starts; a reload
may move a name to another source."""

from __future__ import annotations

from pathlib import Path

import pytest

from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.plugin.services import Services
from interkube.server.runtime import build

SAMPLE = Path(__file__).with_name("data") / "cluster.yaml"


def corefile(first: Path, second: Path) -> str:
    return (f".:53 {{\n  kubernetes cluster.a {{\n    snapshot {first}\n    cluster same\n  }}\n}}\n"
            f"other.test:53 {{\n  kubernetes cluster.b {{\n    snapshot {second}\n    cluster same\n  }}\n}}\n")


def test_refused_at_the_second_stanza_with_the_first_named(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(SAMPLE.read_text())
    with pytest.raises(ConfigError) as info:
        build(parse_text(corefile(SAMPLE, other), "Corefile"), "Corefile", Services())
    message = str(info.value)
    assert message.startswith("Corefile:8: kubernetes: two kubernetes stanzas serve the cluster name 'same' "
                              "from different sources"), message
    assert message.endswith("(first at Corefile:2)") and str(other) in message


def test_the_same_source_twice_and_a_name_moved_by_a_reload(tmp_path: Path) -> None:
    services = Services()
    build(parse_text(corefile(SAMPLE, SAMPLE), "Corefile"), "Corefile", services)  # one cluster, shared
    other = tmp_path / "other.yaml"
    other.write_text(SAMPLE.read_text())
    text = f".:53 {{\n  kubernetes cluster.a {{\n    snapshot {other}\n    cluster same\n  }}\n}}\n"
    build(parse_text(text, "Corefile"), "Corefile", services)  # the next configuration: another source
