"""The view plugin's expressions: each function, the operators and their precedence, literals,
and every refusal with its file:line and column."""

from __future__ import annotations

from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import pytest

from interkube.corefile.parser import parse_text
from interkube.dns.wire import parse_query
from interkube.errors import ConfigError
from interkube.plugin.request import Request, Route
from interkube.plugins.view.expression import Cidr, compile_expression, go_regexp, incidr, run_all
from interkube.plugins.view.parse import parse
from interkube.plugins.view.syntax import ExpressionError, tokenize


def request(name: str = "www.Example.ORG.", rdtype: str = "A", *, client: tuple[Any, ...] = ("10.0.0.7", 40000),
            proto: str = "udp", server: str = "dns://127.0.0.1:5353", meta: dict[str, Any] | None = None,
            qid: int = 4660, **make: Any) -> Request:
    msg = dns.message.make_query(name, rdtype, **make)
    msg.id = qid
    wire = msg.to_wire()
    q = parse_query(wire)
    assert q is not None
    req = Request(wire, q, client, proto)
    req.route = Route(".", server)
    req.meta = meta
    return req


def value(text: str, req: Request | None = None) -> bool:
    """Whether the condition ``text`` holds for ``req`` (run as a view runs it)."""
    return run_all([compile_expression(text)], req or request())


@pytest.mark.parametrize(("text", "expected"), [
    ("name() == 'www.example.org.'", True),             # lower case, fully qualified
    ("type() == 'A'", True),
    ("class() == 'IN'", True),
    ("proto() == 'udp'", True),
    ("client_ip() == '10.0.0.7'", True),
    ("port() == '40000'", True),
    ("id() == 4660", True),
    ("opcode() == 0", True),
    ("do() == false", True),
    ("bufsize() == 512", True),                          # no EDNS: 512
    ("server_ip() == '127.0.0.1'", True),
    ("server_port() == '5353'", True),
    ("size() > 12", True),
    ("metadata('test/label') == ''", True),              # no metadata: the empty string
])
def test_each_function_reads_the_query(text: str, expected: bool) -> None:
    assert value(text) is expected


def test_functions_follow_the_query() -> None:
    assert value("type() == 'AAAA' && class() == 'CH'", request(rdtype="AAAA", rdclass="CH"))
    assert value("proto() == 'tcp' && bufsize() == 65535", request(proto="tcp"))
    assert value("proto() == 'tcp'", request(proto="tls"))      # DNS over TLS is TCP, as in CoreDNS
    assert value("bufsize() == 1232 && do()", request(use_edns=0, payload=1232, want_dnssec=True))
    assert value("bufsize() == 512", request(use_edns=0, payload=100))
    assert value("size() == " + str(len(request(use_edns=0).wire)), request(use_edns=0))
    assert value("id() == 7", request(qid=7))
    # A v4 client of a dual-stack socket is its IPv4 address; a v6 one has no brackets.
    assert value("client_ip() == '127.0.0.2'", request(client=("::ffff:127.0.0.2", 5, 0, 0)))
    assert value("client_ip() == '::1'", request(client=("::1", 5, 0, 0)))
    # A block on every interface: the unspecified address of the client's family.
    assert value("server_ip() == '0.0.0.0' && server_port() == '53'", request(server="dns://:53"))
    assert value("server_ip() == '::'", request(client=("::1", 5, 0, 0), server="dns://:53"))
    assert value("metadata('test/label') == 'x'", request(meta={"test/label": lambda: "x"}))


def test_incidr() -> None:
    assert value("incidr(client_ip(), '10.0.0.0/24')")
    assert not value("incidr(client_ip(), '10.0.1.0/24')")
    assert value("incidr(client_ip(), '10.0.0.7/32')")                # host bits are fine
    assert value("incidr('2001:db8::5', '2001:0DB8::/32')")
    assert not value("incidr('10.0.0.7', '::/0')")                     # families apart, as Go
    assert value("incidr('::ffff:10.0.0.7', '10.0.0.0/8')")           # a mapped address is IPv4
    assert value("incidr('10.1.2.3', '::ffff:10.0.0.0/104')")         # and so is a mapped network
    # An argument that is not an address makes the whole expression false (CoreDNS: an error).
    assert not value("incidr(name(), '10.0.0.0/8') || true")
    assert not value("incidr('fe80::1%lo', 'fe80::/10')")
    assert not value("incidr(client_ip(), metadata('test/net'))")    # "" is not a CIDR
    assert value("incidr(client_ip(), metadata('test/net'))", request(meta={"test/net": "10.0.0.0/8"}))
    assert incidr("192.0.2.1", "192.0.2.0/24") and not incidr("192.0.3.1", "192.0.2.0/24")
    for bad in ("10.0.0.0", "10.0.0.0/33", "10.0.0/8", "10.0.0.0/255.0.0.0", "::/129", "x/8"):
        with pytest.raises(ValueError):
            Cidr.parse(bad)


@pytest.mark.parametrize(("text", "expected"), [
    ("type() in ['A', 'AAAA']", True),
    ("type() not in ['A', 'AAAA']", False),
    ("opcode() in [0, 1.0]", True),
    ("do() in [0, 'x']", False),                         # a bool never equals a number
    ("name() matches '^www\\\\.example\\\\.org\\\\.$'", True),
    ("name() matches 'EXAMPLE'", False),                 # the name is in lower case
    ("name() not matches '^mail'", True),
    ("name() contains 'example'", True),
    ("name() startsWith 'www.'", True),
    ("name() endsWith '.org.'", True),
    ("name() not endsWith '.org.'", False),
    ("'b' > 'a' && 'ab' < 'b'", True),                   # strings by byte order
    ("1 < 2 < 3", True),
    ("3 > 2 > 2", False),                                # a chain: 3 > 2 and 2 > 2
    ("2 >= 2.0 && -1 < +0 && 1 == 1.0 && 1 != 1.5", True),
    ("0x10 == 16 && 0o10 == 8 && 0b10 == 2 && 1_000 == 1000 && 1e3 == 1000 && .5 == 0.5", True),
    ("nil == nil && name() != nil", True),
    ("true || false && false", True),                    # and binds tighter than or
    ("(true || false) && false", False),
    ("true or false and false", True),
    ("not false and !false", True),
    ("!(type() == 'A')", False),
    ("'a\\tb' == \"a\\tb\" && `a\\tb` != 'a\\tb' && `a``b` == 'a`b'", True),
    ("'\\x41\\u00e9\\U0001F600\\101' == 'Aé😀A' && '\\u{41}' == 'A'", True),
    ("type() == 'A' // a comment", True),
    ("/* a comment */ type() == 'A'", True),
])
def test_operators_and_literals(text: str, expected: bool) -> None:
    assert value(text) is expected


def test_several_expressions_must_all_hold_and_none_is_a_match() -> None:
    req = request()
    a, b = compile_expression("type() == 'A'"), compile_expression("proto() == 'tcp'")
    assert run_all([a], req) and not run_all([a, b], req) and run_all([], req)
    assert a.uses == {"type"} and compile_expression("incidr(client_ip(), '1.0.0.0/8')").uses == {"client_ip"}


def test_go_regexp_syntax() -> None:
    assert go_regexp(r"org\.\z").search("example.org.")
    assert not go_regexp(r"org\z").search("example.org.")
    assert go_regexp(r"^[[:alpha:]]+\.$").search("abc.") and not go_regexp(r"^[[:digit:]]+$").search("abc")
    assert go_regexp(r"\Qa.b\E$").search("xa.b") and not go_regexp(r"\Qa.b\E").search("axb")
    assert go_regexp(r"^(?<first>[a-z]+)\.").search("www.example.")
    assert go_regexp("(?i)^WWW").search("www.")
    for bad in (r"foo(?=bar)", r"(?<!x)y", r"(a)\1", r"\pL", r"[[:nope:]]", r"\Z", "("):
        with pytest.raises(ValueError):
            go_regexp(bad)


@pytest.mark.parametrize(("text", "message", "column"), [
    ("", "empty expression", 1),
    ("name() ==", "unexpected end of expression", 10),
    ("name() = 'x'", "unexpected operator '='", 8),
    ("name() == 1", "invalid operation: == (mismatched types string and int)", 8),
    ("do() && 'x'", "invalid operation: && (mismatched types bool and string)", 6),
    ("name() < 1", "invalid operation: < (mismatched types string and int)", 8),
    ("not name() == 'x'", "invalid operation: not (mismatched type string) (`not` binds tighter", 1),
    ("-name() == ''", "invalid operation: - (mismatched type string)", 1),
    ("type() in [1, 2]", "cannot use string as type int in array", 8),
    ("type() in 'A'", "invalid operation: in (mismatched types string and string)", 8),
    ("name() matches 1", "invalid operation: matches (mismatched types string and int)", 8),
    ("name() matches '('", "error parsing regexp '('", 16),
    ("name() contains 1", "invalid operation: contains (mismatched types string and int)", 8),
    ("incidr(client_ip())", "not enough arguments to call incidr", 1),
    ("type(1) == 'A'", "too many arguments to call type", 1),
    ("incidr(1, '10.0.0.0/8')", "cannot use int as argument (type string) to call incidr", 8),
    ("incidr(client_ip(), '10.0.0/8')", "incidr: '10.0.0/8' is not a CIDR", 21),
    ("foo() == 1", "unknown name foo", 1),
    ("x == 1", "unknown name x", 1),
    ("name == 'x'", "name is a function: call it, name()", 1),
    ("name()", "the expression is a string, not a condition", 1),
    ("1", "the expression is a int, not a condition", 1),
    ("'a\\.b' == ''", "invalid char escape", 3),
    ("'abc", "literal not terminated", 1),
    ("name() == 'x' @", "unrecognized character '@'", 15),
    ("1x == 1", "bad number syntax", 2),
    ("99999999999999999999 > 1", "integer literal is too large", 1),
    ("/* open", "unclosed comment", 7),
    ("name() not == 'x'", "unexpected operator '==' after 'not'", 12),
    ("(name() == 'x'", "unexpected end of expression, expected ')'", 15),
    ("[1, 2 == 1", "unexpected end of expression, expected ','", 11),
])
def test_mistakes_are_refused_with_their_column(text: str, message: str, column: int) -> None:
    with pytest.raises(ExpressionError) as err:
        compile_expression(text)
    assert message in err.value.message and err.value.column == column, err.value.message


@pytest.mark.parametrize(("text", "what"), [
    ("size() + 1 > 2", "the + operator is not supported"),
    ("id() % 2 == 0", "the % operator is not supported"),
    ("id() in 1..3", "the .. operator is not supported"),
    ("len(name()) > 3", "the function len() is not supported"),
    ("lower(name()) == 'a.'", "the function lower() is not supported"),
    ("all([true], {# == true})", "the function all() is not supported"),
    ("name().x == 1", "member access (.field) is not supported"),
    ("name()[0] == 'a'", "indexing and slicing ([...]) is not supported"),
    ("{'a': 1} == nil", "maps ({...}) is not supported"),
    ("let x = 1; x == 1", "`let` is not supported"),
    ("if true { true } else { false }", "`if` is not supported"),
    ("true ? true : false", "the ?: conditional is not supported"),
    ("nil ?? true", "the ?? operator is not supported"),
    ("name() | lower() == 'a'", "the | operator is not supported"),
    ("true; true", "sequences (;) is not supported"),
    ("b'x' == nil", "byte strings (b'...') are not supported"),
    ("[1] == [1]", "comparing lists is not supported"),
    ("$env.x == 1", "member access (.field) is not supported"),
])
def test_the_rest_of_expr_lang_is_refused_as_not_supported(text: str, what: str) -> None:
    with pytest.raises(ExpressionError, match=r"not supported"):
        compile_expression(text)
    with pytest.raises(ExpressionError) as err:
        compile_expression(text)
    assert what in err.value.message


def directive(text: str) -> Any:
    [block] = parse_text(text, "Corefile")
    return block.directives[0]


def test_parse_compiles_every_expr_line() -> None:
    cfg = parse(directive(". {\n  view v {\n    expr type() == 'A'\n    expr proto() == 'udp'\n  }\n}\n"))
    assert cfg.name == "v" and [p.text for p in cfg.programs] == ["type() == 'A'", "proto() == 'udp'"]
    assert parse(directive(". {\n  view bare\n}\n")).programs == ()
    # The words of the line joined by one space: expr-lang sees one expression.
    cfg = parse(directive(". {\n  view v {\n    expr type()   in   ['A',    'AAAA']\n  }\n}\n"))
    assert cfg.programs[0].text == "type() in ['A', 'AAAA']"


@pytest.mark.parametrize(("body", "message"), [
    ("view", "Corefile:2: view: expected exactly 1 argument, got 0"),
    ("view a b", "Corefile:2: view: expected exactly 1 argument, got 2"),
    ("view v {\n    foo bar\n  }", "Corefile:3: view: unknown option 'foo'"),
    ("view v {\n    expr\n  }", "Corefile:3: view v: expr: empty expression (column 1)"),
    ("view v {\n    expr type() == A\n  }",
     "Corefile:3: view v: expr type() == A: unknown name A (column 11)"),
    ('view v {\n    expr name() == "example.org."\n  }',  # the Corefile took the quotes
     "Corefile:3: view v: expr name() == example.org.: member access (.field) is not supported (column 18)"),
])
def test_parse_errors_name_file_and_line(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(directive(f". {{\n  {body}\n}}\n"))
    assert str(err.value) == message


def test_tokens_keep_their_columns() -> None:
    toks = tokenize("name() not in ['a']")
    assert [(t.kind, t.value, t.column) for t in toks[:5]] == [
        ("identifier", "name", 1), ("bracket", "(", 5), ("bracket", ")", 6), ("operator", "not", 8),
        ("operator", "in", 12)]


def test_unknown_types_and_classes_read_as_their_numbers() -> None:
    assert value("type() == 'TYPE65280'", request(rdtype=65280))
    q = dns.message.make_query("a.", "A")
    q.set_opcode(dns.opcode.QUERY)
    assert q.flags & dns.flags.QR == 0 and dns.edns.NSID  # (dnspython names used above exist)
