"""Go regular expressions as Python runs them: spellings translated, what would mean something
else refused."""

from __future__ import annotations

import pytest

from interkube.pkg.goregex import PatternError, compile_go


@pytest.mark.parametrize(("go", "python"), [
    (r"(^|[.])ip-(?P<a>[0-9]*)[.]example[.]$", r"(^|[.])ip-(?P<a>[0-9]*)[.]example[.]$"),
    (r"^(?<host>[a-z]+)\.x\z", r"^(?P<host>[a-z]+)\.x\Z"),
    (r"^[[:alpha:]][[:digit:]_]+$", r"^[A-Za-z][0-9_]+$"),
    (r"[a[]", r"[a\[]"),
    (r"[]a]x", r"[\]a]x"),
    (r"[^]a]", r"[^\]a]"),
    (r"^\Qa.b\E[.]", r"^a\.b[.]"),
    (r"(?i)^WWW[.]", r"(?i)^WWW[.]"),
    (r"^(?i:www)[.]", r"^(?i:www)[.]"),
])
def test_go_patterns_translated(go: str, python: str) -> None:
    assert compile_go(go).pattern == python


def test_go_classes_are_ascii_as_in_go() -> None:
    # Go's \d and \w are ASCII; Python's str patterns would take other scripts' digits too.
    assert compile_go(r"^\d+$").search("٣") is None
    assert compile_go(r"^\w+$").search("é") is None


@pytest.mark.parametrize("go", [r"a\1", r"(?=a)", r"(?<=a)b", r"(?>a)", r"a++", r"\pL", r"(?U)a+",
                                r"[[:^alpha:]]", r"[[:nope:]]", r"a\Z", "x(?i)y", "(", "[a"])
def test_go_patterns_refused(go: str) -> None:
    with pytest.raises(PatternError):
        compile_go(go)


def test_a_literal_close_bracket_first_in_a_class() -> None:
    assert compile_go(r"^[]a]+$").search("a]a")
    assert compile_go(r"^\Q(x)\E$").search("(x)")
