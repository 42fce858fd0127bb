"""Parse `view NAME { expr EXPRESSION ... }`: the expressions compiled here, once."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.pkg import args
from interkube.plugins.view.expression import ExpressionError, Program, compile_expression


@dataclass(frozen=True)
class ViewConfig:
    name: str
    #: Every `expr` line, compiled; all must be true (none: every query is the view's).
    programs: tuple[Program, ...] = ()


def parse(d: Directive) -> ViewConfig:
    (name,) = args.nargs(d, 1, 1)
    programs = []
    for opt in d.block:
        if opt.name != "expr":
            raise args.unknown_option(opt, "view")
        args.no_block(opt)
        # As CoreDNS: the line's words joined by one space (a Corefile's "..." quotes are the
        # Corefile's, gone before the expression is read: write strings in '...').
        text = " ".join(tok.text for tok in opt.args)
        try:
            programs.append(compile_expression(text))
        except ExpressionError as exc:
            shown = f"expr {text}" if text else "expr"
            raise opt.token.error(f"view {name.text}: {shown}: {exc.message}") from None
    return ViewConfig(name.text, tuple(programs))
