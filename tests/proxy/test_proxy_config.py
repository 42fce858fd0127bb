"""The proxy's configuration file: every option, errors at file:line, Service-range overlaps (R6)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from interkube.cli import main
from interkube.corefile.parser import parse_text
from interkube.errors import ConfigError
from interkube.proxy.config import DEFAULT_MARK, load, parse


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "proxy.conf"
    path.write_text(body)
    return str(path)


FULL = """\
proxy {
    cluster east {
        kubeconfig /etc/k/east.yaml east-admin
        service_cidr 10.96.0.0/16 fd00:10:96::/112
    }
    cluster west {
        snapshot /a.yaml /b.yaml
        service_cidr 10.97.0.0/16
        wins
    }
    local 10.100.0.0/16
    masquerade
    mark 0x100
    hooks prerouting
    announce kube-vip0
    http 127.0.0.1:9400
}
"""


def test_every_option(tmp_path: Path) -> None:
    config = load(write(tmp_path, FULL))
    east, west = config.clusters
    assert (east.name, east.kubeconfig, east.context, east.snapshot) == ("east", "/etc/k/east.yaml", "east-admin", ())
    assert east.service_cidrs == (ipaddress.ip_network("10.96.0.0/16"), ipaddress.ip_network("fd00:10:96::/112"))
    assert (west.snapshot, west.wins, east.wins) == (("/a.yaml", "/b.yaml"), True, False)
    assert config.local == (ipaddress.ip_network("10.100.0.0/16"),)
    assert (config.masquerade, config.mark, config.hooks, config.announce, config.http) == (
        True, 0x100, frozenset({"prerouting"}), "kube-vip0", ("127.0.0.1", 9400))


def test_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, "proxy {\n    cluster a {\n        snapshot /a.yaml\n    }\n}\n"))
    assert (config.masquerade, config.mark, config.hooks, config.announce, config.http) == (
        False, DEFAULT_MARK, frozenset({"prerouting", "output"}), None, None)


@pytest.mark.parametrize(("body", "line", "words"), [
    ("proxy {\n    cluster a {\n        snapshot /a.yaml\n    }\n    bogus\n}\n", 5, "unknown option 'bogus'"),
    ("proxy {\n    cluster a {\n        snapshot /a.yaml\n        zones x\n    }\n}\n", 4, "unknown option 'zones'"),
    ("proxy {\n    cluster a {\n        service_cidr 10.0.0.0/8\n    }\n}\n", 2, "exactly one of"),
    ("proxy {\n    cluster a {\n        snapshot /a\n        kubeconfig /k\n    }\n}\n", 2, "exactly one of"),
    ("proxy {\n    cluster a {\n        snapshot /a\n    }\n    mark lots\n}\n", 5, "not a number"),
    ("proxy {\n    cluster a {\n        snapshot /a\n    }\n    hooks input\n}\n", 5, "'input' is not one of"),
    ("proxy {\n    cluster a {\n        snapshot /a\n    }\n    http localhost\n}\n", 5, "not ADDR:PORT"),
    ("proxy {\n    cluster a {\n        snapshot /a\n    }\n    cluster a {\n        snapshot /b\n    }\n}\n", 5,
     "named twice"),
    ("proxy {\n    masquerade\n}\n", 1, "no `cluster NAME"),
    ("proxy {\n    cluster a {\n        snapshot /a\n    }\n    announce d0\n}\n", 2, "needs a `service_cidr`"),
    ("proxy {\n    cluster a {\n        snapshot /a\n        service_cidr 10.0.0.0/33\n    }\n}\n", 4,
     "invalid network"),
    ("dns {\n}\n", 1, "one `proxy { ... }` block"),
])
def test_errors_name_file_and_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.file == path and err.value.line == line, str(err.value)
    assert words in str(err.value)


OVERLAP = """\
proxy {
    cluster a {
        snapshot /a.yaml
        service_cidr 10.96.0.0/16
    }
    cluster b {
        snapshot /b.yaml
        service_cidr 10.96.128.0/17
    }
}
"""


def test_overlapping_service_ranges_are_refused_with_r6(tmp_path: Path) -> None:
    path = write(tmp_path, OVERLAP)
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert text.startswith(f"{path}:8: R6: ") and "10.96.0.0/16" in text and "10.96.128.0/17" in text
    assert "proxied together" in text and "wins" in text


def test_one_winner_settles_an_overlap_two_do_not(tmp_path: Path) -> None:
    one = OVERLAP.replace("service_cidr 10.96.128.0/17\n", "service_cidr 10.96.128.0/17\n        wins\n")
    assert load(write(tmp_path, one)).cluster("b").wins
    both = one.replace("service_cidr 10.96.0.0/16\n", "service_cidr 10.96.0.0/16\n        wins\n")
    with pytest.raises(ConfigError, match="both clusters say `wins`"):
        load(write(tmp_path, both))


def test_a_range_over_a_local_one_is_refused(tmp_path: Path) -> None:
    body = OVERLAP.replace("10.96.128.0/17", "10.97.0.0/16").replace("}\n}\n", "}\n    local 10.96.0.0/12\n}\n")
    with pytest.raises(ConfigError, match=r"R6: .*local"):
        load(write(tmp_path, body))


def test_the_command_reports_a_bad_file_and_starts_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, OVERLAP)
    assert main(["proxy", "-conf", path]) == 1
    assert capsys.readouterr().err.startswith(f"interkube proxy: {path}:8: R6: ")


def test_routes_prints_what_other_hosts_need(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = FULL.replace("    announce kube-vip0\n", "")
    body = body.replace("        kubeconfig /etc/k/east.yaml east-admin\n", "        snapshot /e.yaml\n")
    path = write(tmp_path, body.replace("service_cidr 10.97.0.0/16\n", ""))
    assert main(["proxy", "routes", "-conf", path, "--via", "192.0.2.1", "--via", "2001:db8::1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ip route replace 10.96.0.0/16 via 192.0.2.1  # cluster east",
        "ip -6 route replace fd00:10:96::/112 via 2001:db8::1  # cluster east",
        f"# cluster west: no service_cidr in {path}, so no route to print",
    ]


def test_the_docs_example_parses() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "proxy.md").read_text()
    examples = re.findall(r"^```proxy\n(.*?)^```", doc, re.M | re.S)
    assert examples
    for text in examples:
        config = parse(parse_text(text, "docs/proxy.md"), "docs/proxy.md")
        assert [c.name for c in config.clusters] == ["east", "west"]
