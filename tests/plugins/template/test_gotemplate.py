"""The Go template evaluator: what it prints, what fails per question, what it refuses; and the
same templates run by Go's own text/template (when a Go toolchain is installed), which must
print the same bytes and fail for the same templates."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from interkube.plugins.template.gotemplate import (
    Data,
    TemplateExecError,
    TemplateSyntaxError,
    parse,
    parse_uint,
)

DATA = Data(zone="example.", name="ip-10-1-2-3.example.", regex="^ip-(?P<b>[0-9]+)",
            match=("ip-10-1-2-3.example.", "10", "1"), group={"0": "ip-10-1-2-3.example.", "1": "10", "2": "1",
                                                           "b": "10"},
            class_="IN", type_="A", remote="192.0.2.9", qname="IP-10-1-2-3.Example.", qtype=1, qclass=1,
            id=4321, rd=True, cd=False)


def run(source: str, data: Data = DATA) -> str:
    return parse(source).execute(data)


PRINTS = [
    ("{{ .Name }} 60 IN A {{ .Group.b }}", "ip-10-1-2-3.example. 60 IN A 10"),
    ("{{ index .Match 2 }}|{{ index .Group \"b\" }}|{{ .Zone }}|{{ .Class }}/{{ .Type }}", "1|10|example.|IN/A"),
    ("{{ .Regex }}", "^ip-(?P<b>[0-9]+)"),
    ("{{ .Match }} {{ .Group }}", "[ip-10-1-2-3.example. 10 1] map[0:ip-10-1-2-3.example. 1:10 2:1 b:10]"),
    ("{{ .Group.nosuch }}|{{ index .Group \"nosuch\" }}|", "<no value>||"),
    ("{{ .Remote }} {{ .Question.Name }} {{ .Question.Qtype }} {{ .Question.Qclass }}",
     "192.0.2.9 IP-10-1-2-3.Example. 1 1"),
    ("{{ .Message.Id }} {{ .Message.RecursionDesired }} {{ .Message.CheckingDisabled }}", "4321 true false"),
    ("{{ parseInt \"7b\" 16 8 }}.{{ parseInt .Group.b 10 8 }}", "123.10"),
    ("{{ printf \"%s.%03d\" .Zone (parseInt \"7\" 10 0) }}", "example..007"),
    ("{{ .Name | printf \"<%s>\" }}", "<ip-10-1-2-3.example.>"),
    ("{{ if eq .Type \"AAAA\" }}six{{ else if eq .Type \"A\" }}four{{ else }}other{{ end }}", "four"),
    ("{{ if and .Group.b (eq (len .Match) 3) }}y{{ end }}{{ if or .Group.nosuch \"\" }}n{{ end }}", "y"),
    ("a  {{- .Zone -}}  b {{/* a comment */}}c{{- /* trimmed */ -}} d", "aexample.b cd"),
    ("{{ not .Match }}{{ ne 1 2 }}{{ lt \"a\" \"b\" }}{{ ge 2 0x2 }}", "falsetruetruetrue"),
    ("{{ `raw {{ x }}` }}{{ \"\\tq\\\"\" }}", "raw {{ x }}\tq\""),
]
FAILURES = [
    ("{{ index .Match 3 }}", "index out of range: 3"),
    ("{{ parseInt .Name 10 8 }}", 'parsing "ip-10-1-2-3.example.": invalid syntax'),
    ("{{ parseInt \"300\" 10 8 }}", "value out of range"),
    ("{{ parseInt \"1\" 1 8 }}", "invalid base 1"),
    ("{{ eq .Name 1 }}", "incompatible types for comparison"),
    ("{{ parseInt \"1\" (parseInt \"16\" 10 8) 8 }}", "expected int; got uint64"),
]


@pytest.mark.parametrize(("source", "printed"), PRINTS)
def test_prints_as_go_does(source: str, printed: str) -> None:
    assert run(source) == printed


@pytest.mark.parametrize(("source", "why"), FAILURES)
def test_failures_for_one_question(source: str, why: str) -> None:
    with pytest.raises(TemplateExecError, match=re.escape(why)):
        run(source)


@pytest.mark.parametrize(("source", "why"), [
    ("{{ .Name", "unclosed action"),
    ("{{ if .Name }}x", "without {{end}}"),
    ("{{ else }}", "unexpected {{else}}"),
    ("{{ range .Match }}{{ end }}", "{{range}} is not supported"),
    ("{{ with .Name }}{{ end }}", "{{with}} is not supported"),
    ("{{ template \"x\" }}", "{{template}} is not supported"),
    ("{{ $x := .Name }}", "variables ($name) are not supported"),
    ("{{ .Name .Zone }}", "can't give argument to non-function .Name"),
    ("{{ nosuch .Name }}", "function 'nosuch' not defined"),
    ("{{ urlquery .Name }}", "function 'urlquery' is not supported"),
    ("{{ .Message }}", ".Message on its own is not supported"),
    ("{{ .Question.Foo }}", ".Question.Foo is not supported"),
    ("{{ .Name.Foo }}", "can't evaluate field Foo in type string"),
    ("{{ . }}", "the whole data ('.') is not supported"),
    ("{{ .Meta \"x\" }}", ".Meta is not supported"),
    ("{{ 1.5 }}", "only integers are supported"),
    ("{{ 'a' }}", "character constants"),
    ("{{ printf \"%f\" 1 }}", "verb %f is not supported"),
    ("{{ printf \"%*d\" 1 2 }}", "is not supported"),
    ("{{ len }}", "wrong number of args for len: want 1 got 0"),
    ("{{ parseInt \"1\" 10 }}", "wrong number of args for parseInt: want 3 got 2"),
    ("{{ (index .Match 1).Foo }}", "(...).Field) are not supported"),
    ("{{ \"\\q\" }}", "invalid escape"),
    ("{{/* open", "unclosed comment"),
])
def test_refused_when_the_corefile_is_read(source: str, why: str) -> None:
    with pytest.raises(TemplateSyntaxError) as info:
        parse(source)
    assert why in str(info.value)


@pytest.mark.parametrize(("text", "base", "bits", "value"), [
    ("0", 0, 0, 0), ("0x1F", 0, 8, 31), ("017", 0, 8, 15), ("0o17", 0, 8, 15), ("0b101", 0, 8, 5),
    ("1_000", 0, 16, 1000), ("zz", 36, 16, 1295), ("18446744073709551615", 10, 64, 2 ** 64 - 1),
])
def test_parse_uint_as_strconv(text: str, base: int, bits: int, value: int) -> None:
    assert parse_uint(text, base, bits) == value


@pytest.mark.parametrize(("text", "base", "bits"), [("", 10, 8), ("-1", 10, 8), ("+1", 10, 8), ("1_0", 10, 16),
                                                    ("_10", 0, 16), ("256", 10, 8), ("8", 8, 8), ("1", 10, 65)])
def test_parse_uint_refuses_as_strconv(text: str, base: int, bits: int) -> None:
    with pytest.raises(TemplateExecError, match=r"strconv\.ParseUint"):
        parse_uint(text, base, bits)


# --- against Go's text/template --------------------------------------------------------------

ORACLE = r"""
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"text/template"
)

type Question struct {
	Name   string
	Qtype  uint16
	Qclass uint16
}

type Message struct {
	Id                 uint16
	RecursionDesired   bool
	CheckingDisabled   bool
}

type Data struct {
	Zone, Name, Regex, Class, Type, Remote string
	Match                                  []string
	Group                                  map[string]string
	Question                               *Question
	Message                                *Message
}

func main() {
	var d Data
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	in.Scan()
	if err := json.Unmarshal(in.Bytes(), &d); err != nil {
		panic(err)
	}
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var src string
		json.Unmarshal(in.Bytes(), &src)
		t, err := template.New("t").Funcs(template.FuncMap{"parseInt": strconv.ParseUint}).Parse(src)
		if err != nil {
			out.Encode(map[string]string{"parse": err.Error()})
			continue
		}
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			out.Encode(map[string]string{"exec": err.Error()})
			continue
		}
		out.Encode(map[string]string{"ok": b.String()})
	}
}
"""

#: Templates both must print alike, or fail alike on this data.
CORPUS = [
    *(source for source, _ in PRINTS),
    *(source for source, _ in FAILURES),
    '{{ printf "%d %s %v %x %5.2s|%-4d|%+d|%#o|%#x|%q" "s" 3 .Group.no "hi" "abcdef" 7 5 8 255 "a\\"b" }}',
    '{{ printf "%d" }}{{ printf "x" 1 }}{{ printf "%%|%t|%v|%s" true false true }}',
    '{{ printf "%05s|%x|% x|%X|%q|%d" "ab" "hi" "hi" "hi" .Match .Match }}',
    '{{ printf "%c%c|%.0d|%08.3d|%-08d|%x|%O|%b|%#b|%o" 65 (parseInt "66" 10 8) 0 5 5 -255 8 5 5 8 }}',
    '{{ printf "%v|%s|%d" .Group .Group .Question.Qtype }}{{ printf "%q" 65 }}',
    '{{ print 1 2 "a" 3 .Match .Group }}|{{ print "a" "b" 1 true }}|{{ println "x" 1 }}',
    '{{ len .Name }} {{ index .Name 0 }} {{ len .Group }}',
    '{{ and .Name 0 }}{{ or "" .Name }}{{ and 1 "x" }}{{ or 0 "" }}',
    '{{ eq 1 (parseInt "1" 10 8) }} {{ eq .Type "A" "AAAA" }} {{ eq .Type "MX" "NS" }}',
    '{{ if .Group.nosuch }}y{{ else }}n{{ end }}{{ if .Match }}m{{ end }}{{ if 0 }}z{{ end }}',
    '{{ index .Match 1 | printf "%s-%s" .Zone }}{{ .Type | eq "A" }}',
    '{{ printf "%s" (printf "%d" (parseInt (index .Match 1) 10 8)) }}',
    '{{ parseInt "0x_1F" 0 8 }} {{ parseInt "1F" 16 0 }} {{ parseInt "777" 8 16 }}',
    '{{ 0x1F }} {{ 017 }} {{ -5 }} {{ 1_000 }} {{ true }} {{ "\\x41\\u00e9\\101" }}',
    '{{- "x" }}  {{ "y" -}}  z',
    '{{ lt 1 2 }}{{ le "b" "a" }}{{ gt .Name .Zone }}{{ ne .Remote "" }}',
    '{{ .Question.Qtype | printf "%05d" }}',
    "{{ index .Match -1 }}", '{{ index .Group 1 }}', '{{ len 3 }}', '{{ lt true false }}',
    '{{ parseInt "1" 10 8 | printf "%d" | parseInt "x" 10 }}',
]


def _go() -> str | None:
    return shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.path.exists(p)), None)


@pytest.fixture(scope="module")
def go_oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A program that runs templates with Go's text/template (only the standard library)."""
    go = _go()
    if go is None:
        pytest.skip("no Go toolchain to compare with")
    work = tmp_path_factory.mktemp("gooracle")
    (work / "main.go").write_text(ORACLE)
    (work / "go.mod").write_text("module oracle\n\ngo 1.21\n")
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    subprocess.run([go, "build", "-o", "oracle", "."], cwd=work, env=env, check=True, timeout=300,
                   capture_output=True)
    return work / "oracle"


def test_same_output_as_go_text_template(go_oracle: Path) -> None:
    data = {"Zone": DATA.zone, "Name": DATA.name, "Regex": DATA.regex, "Class": DATA.class_, "Type": DATA.type_,
            "Remote": DATA.remote, "Match": list(DATA.match), "Group": dict(DATA.group),
            "Question": {"Name": DATA.qname, "Qtype": DATA.qtype, "Qclass": DATA.qclass},
            "Message": {"Id": DATA.id, "RecursionDesired": DATA.rd, "CheckingDisabled": DATA.cd}}
    lines = [json.dumps(data), *(json.dumps(source) for source in CORPUS)]
    done = subprocess.run([go_oracle], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=60, check=True)
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(CORPUS)
    different = []
    for source, go in zip(CORPUS, results, strict=True):
        try:
            ours = {"ok": run(source)}
        except TemplateExecError as exc:
            ours = {"exec": str(exc)}
        if set(ours) != set(go) or ("ok" in go and ours["ok"] != go["ok"]):
            different.append(f"{source!r}: Go {go}, interkube {ours}")
    assert not different, "\n".join(different)
