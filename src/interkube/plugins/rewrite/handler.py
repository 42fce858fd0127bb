"""The rewrite handler: the rest of the chain answers the rewritten question, the client gets
the answer to its own.

Per query, on the fast path as on the slow one:

1. The *plan* for the question: what the block's rules make of it (:func:`.rules.evaluate`).
   Rules read only the question (name, type, class) unless the block has edns0 rules or
   metadata name rules, so plans are remembered by the query's key: a repeated question costs
   one dict lookup here. A question no rule matches passes on untouched.
2. The rewritten query (the plan's question, lower case, in the client's header and OPT
   record) is put in the request while the rest of the chain reads it, and the client's is put
   back before this handler returns, whatever happens.
3. The answer is made the client's (:func:`.response.transform`: question restored, response
   rules applied). That is a dnspython parse and render, so the plan keeps the last result:
   when the next answer from the chain has the same bytes (an answer from memory: hosts,
   kubernetes, cache), the client's answer is the kept one's template; when only its TTLs
   differ (the cache counting down), they are copied in. When the next plugin answers from
   templates of its own (hosts, file, kubernetes, template, ...), it is asked for its template
   instead of its answer: the same template object as last time is the same answer, without
   rendering it or comparing bytes.

So a rewritten name is answered from memory as any other: the rules cost nothing per query
once its plan is known, and the answer's rewrite nothing while the answer below stays the same.
"""

from __future__ import annotations

import contextvars
import enum
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

import dns.exception
import dns.name

from interkube.dns.memo import Memo
from interkube.dns.wire import (
    HEADER_LEN,
    RCODE_SERVFAIL,
    Query,
    error_response,
    parse_query,
    rcode_of,
)
from interkube.errors import DnsError, InvalidRewrite
from interkube.plugin.answers import INLINE_BUILDS, Answer, Deferred, Entry, TemplateHandler
from interkube.plugin.answers import PASS as NO_TEMPLATE
from interkube.plugin.handler import SLOW, Handler, passes_later
from interkube.plugin.request import Request
from interkube.plugins.rewrite.parse import EdnsRule, NameRule, Rule
from interkube.plugins.rewrite.response import NeedLookup, Transformed, transform
from interkube.plugins.rewrite.rules import (
    RcodeMap,
    ResponseRule,
    TtlClamp,
    echoed,
    evaluate,
    opt_bytes,
    question_bytes,
)

#: Plans remembered, by query key (name, type, class, shape), the oldest forgotten first.
PLAN_LIMIT: Final = 16_384
#: Lookups one answer may need (cname rules), at most.
MAX_LOOKUPS: Final = 8
#: The plugin whose answers carry an OPT record of their own (the upstream's): CoreDNS copies
#: no option of the query into those.
FORWARDED: Final = "forward"

_U32 = struct.Struct("!I")
_PAIR = struct.Struct("!HH")
_new_query = object.__new__
_refcount = sys.getrefcount
_AR_ONE = b"\x00\x01"
#: How deep the cname rules' lookups of this task have gone (CoreDNS's loop key).
_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("rewrite_depth", default=0)


class _Pass(enum.Enum):
    """No rule matched: the query goes on as it came."""

    PASS = "pass"


PASS: Final = _Pass.PASS


class Answered:
    """The last answer the chain gave for a plan's question, and the client's answer made of it."""

    __slots__ = ("down", "size", "tail", "by", "head", "body", "out", "ttls", "source")

    def __init__(self, down: bytes, by: str | None, out: bytes, question_end: int,
                 ttls: tuple[tuple[int, ...], tuple[int, ...]] | None) -> None:
        self.down = down
        self.size = len(down)
        self.tail = down[2:]           # what the next answer is compared with (all but the ID)
        #: The plugin that answered, when the client's answer depends on it (options copied
        #: into answers from memory only); None when it does not.
        self.by = by
        # The client's answer as a template (interkube.dns.wire.Template, unrolled: this is
        # rendered inline on the hot path).
        self.head = out[2:HEADER_LEN]
        self.body = out[question_end:]
        self.out = out
        self.ttls = ttls
        #: The next plugin's template that gave ``down``, when the next plugin answers from
        #: templates (see RewriteHandler.fast); None otherwise.
        self.source: Answer | None = None

    def render(self, query: Query) -> bytes:
        wire = query.wire
        return wire[:2] + self.head + wire[HEADER_LEN:query.question_end] + self.body


class Plan:
    """What the rules make of one question (see the module docstring)."""

    __slots__ = ("question", "opt", "qtype", "qclass", "edns", "payload", "do", "rules", "echo", "invalid",
                 "simple", "clamps", "maps_rcodes", "last", "info", "hot", "query")

    def __init__(self, question: bytes = b"", opt: bytes | None = None, *, qtype: int = 0, qclass: int = 0,
                 edns: bool = False,
                 payload: int = 0, do: bool = False, rules: tuple[ResponseRule, ...] = (),
                 echo: tuple[tuple[int, bytes], ...] = (), invalid: str = "", simple: bool = False) -> None:
        self.question = question      # lower-cased name, type, class
        self.opt = opt                # the query's OPT record when rules changed it
        self.qtype = qtype
        self.qclass = qclass
        self.edns = edns
        self.payload = payload
        self.do = do
        self.rules = rules            # response rules, in the order they apply
        self.echo = echo              # options to copy into an answer from memory
        self.invalid = invalid        # why the rewritten name is no name
        #: The client's answer is the chain's with the client's question: nothing else to do.
        self.simple = simple
        self.clamps = tuple(r for r in rules if isinstance(r, TtlClamp))
        self.maps_rcodes = any(isinstance(r, RcodeMap) for r in rules)
        self.last: Answered | None = None
        #: The rewritten query's fields as the fast parser reads them (interkube.dns.wire.Query),
        #: the flags and wire aside: the same for every query with this plan's key.
        self.info: tuple[Any, ...] = ()
        #: An answer is kept and the query is the client's with another question: the hot path.
        self.hot = False
        #: The hot path's rewritten Query, reused (see RewriteHandler.fast).
        self.query: Query | None = None

    def keep(self, answered: Answered) -> None:
        self.last = answered
        self.hot = self.opt is None and bool(self.info)


class RewriteHandler(Handler):
    plugin = "rewrite"

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.rules: list[Rule] = []
        self.local_codes: frozenset[int] = frozenset()
        #: Rules that read more than the question (EDNS options, the client, metadata): plans
        #: are then made per query.
        self.dynamic = False
        self._plans: Memo[bytes, Plan | _Pass] = Memo(PLAN_LIMIT)
        self._known = self._plans.table
        #: A dynamic block's plans, by the query's bytes and what the rules made of them.
        self._pairs: Memo[bytes, Plan] = Memo(PLAN_LIMIT)
        #: The next plugin's template lookup, when it answers from templates (set once the
        #: chain is linked: see plan()), and its name.
        self._template: Callable[[Request], Entry] | None = None
        self._next_plugin = ""
        self._linked = False
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule) -> None:
        """One more rule, after the others (each `rewrite` directive of the block adds one)."""
        self.rules.append(rule)
        if isinstance(rule, EdnsRule):
            self.dynamic = True
            if rule.option == "local":
                self.local_codes |= {rule.code}
        elif isinstance(rule, NameRule) and rule.parts is not None:
            self.dynamic = True
        self._plans.clear()
        self._pairs.clear()

    # -- the plan ------------------------------------------------------------------------------

    def plan(self, req: Request) -> Plan | _Pass:
        """What the rules make of ``req``'s question (remembered unless the block is dynamic)."""
        if not self._linked:  # (the chain is linked after setup; the first query sees it)
            self._linked = True
            nxt = self.next
            self._next_plugin = nxt.plugin
            # (a plugin whose fast path does more than serve its template is asked as any other)
            if isinstance(nxt, TemplateHandler) and type(nxt).fast is TemplateHandler.fast:
                self._template = nxt.template
        q = req.query
        if not self.dynamic:
            known = self._known.get(q.key)
            if known is not None:
                return known
        ev = evaluate(self.rules, req)
        st = ev.state
        found: Plan | _Pass
        if not ev.rewrote:
            found = PASS
        elif ev.invalid:
            found = Plan(invalid=ev.invalid)
        else:
            question = question_bytes(st)
            rules = tuple(reversed(ev.responses))
            opt = opt_bytes(st) if st.opt_changed else None
            echo = echoed(st, ev.responses, self.local_codes)
            same_question = question == q.lname + q.wire[q.qname_end:q.question_end]
            if same_question and opt is None and not rules and not echo:
                found = PASS  # (a rule matched and changed nothing)
            else:
                found = Plan(question, opt, qtype=st.qtype, qclass=st.qclass, edns=st.edns, payload=st.payload,
                             do=st.do, rules=rules, echo=echo, simple=same_question and not rules and not echo)
        if not self.dynamic:
            self._plans.remember(q.key, found)
        elif isinstance(found, Plan) and not found.invalid:
            # A dynamic block's plan depends on more than the question, but it is the same plan
            # (and so may keep its answer) for the same query bytes rewritten into the same
            # query: the client's bytes after the ID, and the rewritten question and OPT record.
            tail = req.wire[2:]
            same = _PAIR.pack(len(tail), len(found.question)) + tail + found.question + (found.opt or b"")
            kept = self._pairs.table.get(same)
            if kept is not None:
                return kept
            self._pairs.remember(same, found)
        return found

    @staticmethod
    def rewritten(req: Request, plan: Plan) -> tuple[bytes, Query]:
        """The rewritten query: the client's header and OPT record, the plan's question."""
        q = req.query
        wire = req.wire
        if plan.opt is None:
            wire2 = wire[:HEADER_LEN] + plan.question + wire[q.question_end:]
        else:
            wire2 = wire[:10] + _AR_ONE + plan.question + plan.opt
        q2 = parse_query(wire2)
        if q2 is None:  # (an option the fast parser leaves to the slow path, such as an ECS opt-out)
            qname_end = HEADER_LEN + len(plan.question) - 4
            q2 = Query(wire2, q.flags, qname_end, plan.qtype, plan.qclass, plan.edns, plan.payload, plan.do)
        elif not plan.info:
            plan.info = (q2.qname_end, q2.question_end, q2.qtype, q2.qclass, q2.lname, q2.key, q2.edns, q2.payload,
                         q2.do)
        return wire2, q2

    # -- the fast path -------------------------------------------------------------------------

    @passes_later
    def fast(self, req: Request) -> bytes | None:
        q = req.query
        plan = self._known.get(q.key)  # (always empty in a dynamic block)
        if plan is None:
            plan = self.plan(req)
        if plan is PASS:
            return self.next.fast(req)  # (unrewritten: an answer that comes later needs nothing from us)
        # A rewritten query's answer is rewritten back here, with the query swapped in: not on
        # the callback path (interkube.plugin.later), whose answer would come after the swap.
        req.replier = None
        last = plan.last
        if last is None or not plan.hot:
            return self._fast(req, plan)
        # The hot path: a question whose plan has answered before (inlined: a repeated question
        # costs well under a microsecond more than an unrewritten one). The rewritten query's
        # fields are the same for every query of the plan but its ID and flags: the plan's Query
        # is reused while nothing kept it (a cache's refresh keeps the request it started
        # for), which a reference count tells exactly: the plan's, this name's and the call's.
        wire = req.wire
        q2 = plan.query
        if q2 is None or _refcount(q2) != 3:
            q2 = plan.query = _new_query(Query)
            (q2.qname_end, q2.question_end, q2.qtype, q2.qclass, q2.lname, q2.key, q2.edns, q2.payload,
             q2.do) = plan.info
            q2.wire = wire[:HEADER_LEN] + plan.question + wire[q.question_end:]
        q2.flags = q.flags
        template = self._template
        if template is not None:
            # The next plugin answers from templates (hosts, file, kubernetes, ...): when it
            # would answer with the template it answered with last time, the kept answer holds.
            # Its template is looked up with the plan's query as it was first written (its ID
            # is no part of a template).
            message = req._message
            req.wire = q2.wire
            req.query = q2
            req._message = None
            try:
                tpl = template(req)
            except Deferred:
                return SLOW  # (nothing answered yet: building it is over the fast path's budget)
            finally:
                req.wire = wire
                req.query = q
                req._message = message
            if tpl is last.source:
                req.answered_by = last.by or self._next_plugin
                return wire[:2] + last.head + wire[HEADER_LEN:q.question_end] + last.body
            if tpl is not NO_TEMPLATE:
                req.answered_by = self._next_plugin
                built = tpl.render(q2)
                if len(built) == last.size and built.endswith(last.tail) and last.by is None:
                    last.source = tpl  # (the same answer from another template: the first time)
                    return wire[:2] + last.head + wire[HEADER_LEN:q.question_end] + last.body
                return self._respond(req, plan, q2, built, tpl)
        wire2 = q2.wire = wire[:HEADER_LEN] + plan.question + wire[q.question_end:]
        message = req._message
        # The request asks the rewritten question while the chain reads it (no copy of the
        # request: this is the hot path), and the client's again whatever happens.
        req.wire = wire2
        req.query = q2
        req._message = None
        try:
            resp = self.next.fast(req)
        finally:
            req.wire = wire
            req.query = q
            req._message = message
        if not resp:
            return resp  # the slow path (None), or nothing to send (b"")
        # The chain's answer is the kept one's when all its bytes but the ID are (endswith
        # compares without a copy).
        if len(resp) == last.size and resp.endswith(last.tail) \
                and (last.by is None or last.by == req.answered_by):
            return wire[:2] + last.head + wire[HEADER_LEN:q.question_end] + last.body
        return self._respond(req, plan, q2, resp)

    def _fast(self, req: Request, plan: Plan) -> bytes | None:
        """The fast path of a plan that has not answered yet, or whose query has other EDNS
        options than the client's."""
        if plan.invalid:
            return SLOW  # the slow path raises the error, for the errors plugin to report
        if plan.last is None and not plan.simple:
            try:
                INLINE_BUILDS.begin()  # (before the chain: its work is not done twice)
            except Deferred:
                return SLOW
        wire2, q2 = self.rewritten(req, plan)
        saved = req.wire, req.query, req._message
        req.wire, req.query, req._message = wire2, q2, None
        try:
            resp = self.next.fast(req)
        finally:
            req.wire, req.query, req._message = saved
        if not resp:
            return resp
        last = plan.last
        if last is not None and resp[2:] == last.tail and (last.by is None or last.by == req.answered_by):
            return last.render(req.query)
        return self._respond(req, plan, q2, resp)

    def _respond(self, req: Request, plan: Plan, q2: Query, resp: bytes,
                 source: Answer | None = None) -> bytes | None:
        """The client's answer made of a chain's answer that is not the kept one (fast path);
        ``source``: the next plugin's template that gave it."""
        lookups: dict[tuple[str, int], bytes | None] = {}
        for _ in range(MAX_LOOKUPS + 1):
            try:
                answer = self._answer(req, plan, q2, resp, lookups, fast=True)
                if source is not None and plan.last is not None and plan.last.down is resp:
                    plan.last.source = source
                return answer
            except NeedLookup as need:
                found = self._lookup_fast(req, q2, need.key)
                if found is None:
                    return SLOW
                lookups[need.key] = found or None
            except Deferred:
                return SLOW
        return SLOW

    def _lookup_fast(self, req: Request, q2: Query, key: tuple[str, int]) -> bytes | None:
        """A cname rule's lookup from memory: the answer, b"" for none, None to wait for it."""
        sub = _lookup_request(req, q2, key)
        if sub is None:
            return b""
        token = _DEPTH.set(_DEPTH.get() + 1)
        try:
            return self.fast(sub)
        finally:
            _DEPTH.reset(token)

    # -- the slow path ---------------------------------------------------------------------------

    async def serve(self, req: Request) -> bytes:
        plan = self.plan(req)
        if plan is PASS:
            return await self.next.serve(req)
        if plan.invalid:
            raise InvalidRewrite(plan.invalid)
        wire2, q2 = self.rewritten(req, plan)
        failure: DnsError | None = None
        saved = req.wire, req.query, req._message
        req.wire, req.query, req._message = wire2, q2, None
        try:
            resp = await self.next.serve(req)
        except DnsError as exc:
            if not plan.maps_rcodes:
                raise
            # A failure is a SERVFAIL answer that rcode rules may change (as CoreDNS writes one
            # through its response rules); if they do not, it stays the failure it was.
            failure = exc
            resp = error_response(wire2, getattr(exc, "rcode", RCODE_SERVFAIL), q2)
        finally:
            req.wire, req.query, req._message = saved
        if not resp:
            return resp
        lookups: dict[tuple[str, int], bytes | None] = {}
        for _ in range(MAX_LOOKUPS + 1):
            try:
                out = self._answer(req, plan, q2, resp, lookups, fast=False)
                break
            except NeedLookup as need:
                lookups[need.key] = await self._lookup_slow(req, q2, need.key)
        else:
            raise InvalidRewrite("too many cname rule lookups for one answer")
        if failure is not None and rcode_of(out) == rcode_of(resp):
            raise failure
        return out

    async def _lookup_slow(self, req: Request, q2: Query, key: tuple[str, int]) -> bytes | None:
        sub = _lookup_request(req, q2, key)
        if sub is None:
            return None
        token = _DEPTH.set(_DEPTH.get() + 1)
        try:
            return await self.serve(sub) or None
        except DnsError:
            return None
        finally:
            _DEPTH.reset(token)

    # -- the client's answer ---------------------------------------------------------------------

    def _answer(self, req: Request, plan: Plan, q2: Query, resp: bytes,
                lookups: dict[tuple[str, int], bytes | None], *, fast: bool) -> bytes:
        """The client's answer made of ``resp`` (the chain's answer to ``q2``); kept in the plan."""
        q = req.query
        last = plan.last
        if last is not None and (last.by is None or last.by == req.answered_by):
            if resp[2:] == last.tail:  # (the slow path's repeated answer: a forwarded one)
                return last.render(q)
            answered = self._ttls_only(plan, last, resp, q, last.by)
            if answered is not None:
                return answered.render(q)
        if plan.simple:
            # The client's question in the chain's answer: same length, every offset holds.
            answered = Answered(resp, req.answered_by if plan.echo else None, resp, q.question_end, None)
            plan.keep(answered)
            return answered.render(q)
        started = INLINE_BUILDS.begin() if fast else 0.0
        try:
            echo = plan.echo if req.answered_by != FORWARDED else ()
            done: Transformed = transform(resp, q, q2.qtype, plan.rules, echo, lookups, _DEPTH.get())
        except (dns.exception.DNSException, ValueError) as exc:  # an answer dnspython cannot read
            raise InvalidRewrite(f"the answer to the rewritten question cannot be rewritten: {exc}") from exc
        finally:
            if fast:
                INLINE_BUILDS.end(started)
        answered = Answered(resp, req.answered_by if plan.echo else None, done.wire, q.question_end,
                            done.ttl_offsets)
        if done.pure:
            plan.keep(answered)
        return answered.render(q)

    @staticmethod
    def _ttls_only(plan: Plan, last: Answered, resp: bytes, q: Query, by: str | None) -> Answered | None:
        """When ``resp`` is the last answer with other TTLs (a cache counting down): the last
        client's answer with the new TTLs (through the ttl rules) written in."""
        old = last.down
        if len(resp) != len(old) or last.ttls is None:
            return None
        down_offsets, out_offsets = last.ttls
        at = 2
        for off in down_offsets:
            if resp[at:off] != old[at:off]:
                return None
            at = off + 4
        if resp[at:] != old[at:]:
            return None
        out = bytearray(last.out)
        clamps = plan.clamps
        for down_off, out_off in zip(down_offsets, out_offsets, strict=True):
            ttl = _U32.unpack_from(resp, down_off)[0]
            for clamp in clamps:
                ttl = clamp(ttl)
            _U32.pack_into(out, out_off, ttl)
        answered = Answered(resp, by, bytes(out), q.question_end, last.ttls)
        plan.keep(answered)
        return answered


def _lookup_request(req: Request, q2: Query, key: tuple[str, int]) -> Request | None:
    """The query a cname rule's lookup asks: the rewritten query's header and OPT record, the
    new target, its type, class IN (CoreDNS's upstream lookup, through this handler)."""
    name, qtype = key
    try:
        name_wire = dns.name.from_text(name).canonicalize().to_wire()
    except (dns.exception.DNSException, ValueError):
        return None
    assert name_wire is not None
    wire = q2.wire[:HEADER_LEN] + name_wire + struct.pack("!HH", qtype, 1) + q2.wire[q2.question_end:]
    q = parse_query(wire)
    if q is None:
        return None
    sub = Request(wire, q, req.client, req.proto, req.local)
    sub.route = req.route
    sub.meta = req.meta
    return sub


__all__ = ["FORWARDED", "MAX_LOOKUPS", "PASS", "PLAN_LIMIT", "Answered", "Plan", "RewriteHandler"]
