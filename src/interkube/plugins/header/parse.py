"""Parse `header { query|response set|clear FLAGS... }`."""

from __future__ import annotations

from dataclasses import dataclass

from interkube.corefile.parser import Directive
from interkube.dns.wire import FLAG_AA, FLAG_RA, FLAG_RD
from interkube.pkg import args

SELECTORS = ("query", "response")
ACTIONS = ("set", "clear")
FLAGS = {"aa": FLAG_AA, "ra": FLAG_RA, "rd": FLAG_RD}


@dataclass(frozen=True)
class FlagEdit:
    """What the rules of one selector do to the flags word: the rules in order, later ones
    winning, folded into a mask to set and a mask to clear (the two never overlap)."""

    set: int = 0
    clear: int = 0

    def then(self, flag: int, state: bool) -> FlagEdit:
        if state:
            return FlagEdit(self.set | flag, self.clear & ~flag)
        return FlagEdit(self.set & ~flag, self.clear | flag)

    def apply(self, flags: int) -> int:
        return (flags | self.set) & ~self.clear

    def __bool__(self) -> bool:
        return bool(self.set or self.clear)


@dataclass(frozen=True)
class HeaderConfig:
    query: FlagEdit = FlagEdit()
    response: FlagEdit = FlagEdit()


def parse(d: Directive) -> HeaderConfig:
    args.nargs(d, 0, 0)
    edits = {"query": FlagEdit(), "response": FlagEdit()}
    for rule in d.block:
        args.no_block(rule)
        selector = rule.name.lower()
        if selector not in SELECTORS:
            raise rule.token.error(f"header: invalid selector {rule.name!r} (expected query or response)")
        if not rule.args:
            raise rule.token.error("header: a rule needs an action (set or clear) and at least one flag")
        action = rule.args[0].text.lower()
        if action not in ACTIONS:
            raise rule.args[0].error(f"header: unknown flag action {rule.args[0].text!r} (expected set or clear)")
        if len(rule.args) < 2:
            raise rule.token.error(f"header: `{selector} {action}` needs at least one flag (aa, ra or rd)")
        for tok in rule.args[1:]:
            flag = FLAGS.get(tok.text.lower())
            if flag is None:
                raise tok.error(f"header: unknown or unsupported flag {tok.text!r} (expected aa, ra or rd)")
            edits[selector] = edits[selector].then(flag, action == "set")
    if not d.block:
        raise d.error("needs a block with at least one rule, e.g. `response set ra`")
    return HeaderConfig(query=edits["query"], response=edits["response"])
