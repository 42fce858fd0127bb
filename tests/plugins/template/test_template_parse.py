"""The template directive: every option, and every mistake named at its file:line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from interkube.errors import ConfigError
from interkube.pkg import fallthrough as fall
from interkube.plugins.template.gotemplate import DEP_CASE, DEP_CLIENT, DEP_QUERY
from interkube.plugins.template.parse import MATCH_ALL, Ederror, parse
from interkube.server.main import CorefileSource, Server
from testkit.corefile import directive


def error(body: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(directive(body))
    return str(info.value)


def test_defaults() -> None:
    cfg = parse(directive("template IN A"))
    assert (cfg.qclass, cfg.qtype, cfg.zones, cfg.patterns) == (1, 1, (), (MATCH_ALL,))
    assert (cfg.records, cfg.rcode, cfg.ederror, cfg.fallthrough) == ((), 0, None, fall.NEVER)
    assert cfg.depends == frozenset()


def test_class_type_and_zones() -> None:
    cfg = parse(directive("template ANY PTR Example.ORG. 10.0.0.0/8"))
    assert (cfg.qclass, cfg.qtype) == (255, 12)
    assert cfg.zones == ("example.org.", "10.in-addr.arpa.")
    assert parse(directive("template CH TXT")).qclass == 3
    assert parse(directive("template IN ANY")).qtype == 255


def test_every_option() -> None:
    cfg = parse(directive("""template IN A example {
        match ^a[.] "^b(?P<x>[0-9]+)[.]"
        match ^c[.]
        answer "{{ .Name }} 60 IN A 192.0.2.1" "{{ .Name }} 60 IN A 192.0.2.2"
        authority "example. 60 IN NS ns.example."
        additional "ns.example. 60 IN A 192.0.2.53"
        rcode NXDOMAIN
        ederror 21 "a reason"
        fallthrough example.
        upstream 127.0.0.1
    }"""))
    assert [p.source for p in cfg.patterns] == ["^a[.]", "^b(?P<x>[0-9]+)[.]", "^c[.]"]
    assert [(r.section, r.source) for r in cfg.records] == [
        ("answer", "{{ .Name }} 60 IN A 192.0.2.1"), ("answer", "{{ .Name }} 60 IN A 192.0.2.2"),
        ("authority", "example. 60 IN NS ns.example."), ("additional", "ns.example. 60 IN A 192.0.2.53")]
    assert [r.where for r in cfg.records] == ["Corefile:5", "Corefile:5", "Corefile:6", "Corefile:7"]
    assert (cfg.rcode, cfg.ederror) == (3, Ederror(21, "a reason"))
    assert cfg.fallthrough == fall.Fallthrough(zones=("example.",), enabled=True)
    assert parse(directive("template IN A {\n ederror 3\n }")).ederror == Ederror(3, "")


@pytest.mark.parametrize(("name", "code"), [("NOERROR", 0), ("SERVFAIL", 2), ("NOTIMPL", 4), ("REFUSED", 5),
                                            ("DSOTYPENI", 11), ("BADSIG", 16), ("BADCOOKIE", 23)])
def test_rcodes_by_miekg_names(name: str, code: int) -> None:
    assert parse(directive(f"template IN A {{\n rcode {name}\n }}")).rcode == code


def test_what_a_template_depends_on() -> None:
    def depends(record: str) -> frozenset[str]:
        return parse(directive(f"template IN TXT {{\n answer {record!r}\n }}".replace("'", '"'))).depends

    assert depends("{{ .Name }} TXT {{ .Zone }} {{ .Group.a }} {{ index .Match 0 }}") == frozenset()
    assert depends("{{ .Name }} TXT {{ .Remote }}") == {DEP_CLIENT}
    assert depends("{{ .Name }} TXT {{ .Question.Name }}") == {DEP_CASE}
    assert depends("{{ .Name }} TXT {{ .Message.Id }}") == {DEP_QUERY}
    assert depends("{{ .Name }} TXT {{ .Question.Qtype }} {{ .Message.RecursionDesired }}") == frozenset()


@pytest.mark.parametrize(("body", "line", "words"), [
    ("template", 2, "expected at least 2 arguments, got 0"),
    ("template IN", 2, "expected at least 2 arguments, got 1"),
    ("template in A", 2, "template: invalid query class 'in'"),
    ("template IN NOPE", 2, "template: invalid query type 'NOPE'"),
    ("template IN TYPE65280", 2, "invalid query type 'TYPE65280'"),
    ("template IN A bad..zone", 2, "bad..zone"),
    ("template IN A {\n match\n }", 3, "template: match: expected at least 1 argument"),
    ("template IN A {\n match ok\n match (unclosed\n }", 4, "could not parse regex '(unclosed'"),
    ("template IN A {\n match a\\1\n }", 3, "back-references"),
    ("template IN A {\n match (?=x)\n }", 3, "look-around"),
    ("template IN A {\n match \\pL\n }", 3, "Unicode classes (\\p...) are not supported"),
    ("template IN A {\n match x(?i)y\n }", 3, "flags set in the middle of a pattern"),
    ("template IN A {\n answer\n }", 3, "template: answer: expected at least 1 argument"),
    ("template IN A {\n answer \"{{ .Name }\"\n }", 3, "answer: could not compile template"),
    ("template IN A {\n authority \"{{ range .Match }}x{{ end }}\"\n }", 3, "{{range}} is not supported"),
    ("template IN A {\n additional \"{{ .Nmae }}\"\n }", 3, "can't evaluate field Nmae"),
    ("template IN A {\n answer \"ok\"\n answer \"{{ html .Name }}\"\n }", 4, "function 'html' is not supported"),
    ("template IN A {\n answer \"{{ $x := 1 }}\"\n }", 3, "variables ($name) are not supported"),
    ("template IN A {\n answer \"{{ .Var.ip }}\"\n }", 3, ".Var is not supported"),
    ("template IN A {\n answer \"{{ printf \\\"%e\\\" 1 }}\"\n }", 3, "verb %e is not supported"),
    ("template IN A {\n rcode\n }", 3, "rcode: expected exactly 1 argument"),
    ("template IN A {\n rcode nxdomain\n }", 3, "unknown rcode 'nxdomain'"),
    ("template IN A {\n ederror\n }", 3, "ederror: expected 1 to 2 arguments, got 0"),
    ("template IN A {\n ederror 65536\n }", 3, "extended DNS error code 65536 is above the maximum"),
    ("template IN A {\n ederror x\n }", 3, "invalid extended DNS error code 'x'"),
    ("template IN A {\n var ip 1\n }", 3, "option 'var' is not supported"),
    ("template IN A {\n expr true\n }", 3, "option 'expr' is not supported"),
    ("template IN A {\n answers x\n }", 3, "template: unknown option 'answers'"),
    ("template IN A {\n fallthrough {\n }\n }", 3, "takes no block"),
])
def test_errors_name_file_and_line(body: str, line: int, words: str) -> None:
    message = error(body)
    assert message.startswith(f"Corefile:{line}: ")
    assert words in message


def test_a_pattern_longer_than_coredns_allows() -> None:
    assert "regex pattern too long: 10001 > 10000" in error(f"template IN A {{\n match {'a' * 10001}\n }}")


def test_several_templates_in_a_block_run_in_corefile_order(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text(".:53 {\n  template IN A b.example\n  hosts {\n fallthrough\n }\n"
                        "  template IN AAAA a.example\n}\n")
    built = Server(CorefileSource(str(corefile))).build()
    assert [h.plugin for h in built.handlers] == ["template", "template", "hosts"]
    assert [h.cfg.zones for h in built.handlers[:2]] == [("b.example.",), ("a.example.",)]  # type: ignore[attr-defined]


def test_a_bad_template_stops_interkube_before_it_starts(tmp_path: Path) -> None:
    corefile = tmp_path / "Corefile"
    corefile.write_text('.:1053 {\n  bind 127.0.0.1\n  template IN A {\n    answer "{{ with .Name }}{{ end }}"\n'
                        "  }\n}\n")
    done = subprocess.run([sys.executable, "-m", "interkube", "serve", "-conf", str(corefile)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert re.search(rf"{re.escape(str(corefile))}:4: template: answer: could not compile template .*"
                     r"\{\{with\}\} is not supported", done.stdout + done.stderr)
