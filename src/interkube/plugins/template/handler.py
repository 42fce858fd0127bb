"""The template handler: answers made from Go templates, as CoreDNS's plugin/template, kept in memory.

An answer depends on the question alone (its name, type, class and shape) unless a template reads
``.Remote`` (the client's address), ``.Question.Name`` (the name as the client spelt it) or
``.Message.Id``. So each distinct question is matched and built once, with dnspython, and then
served as a pre-encoded template on the fast path; a template that reads .Remote keys its answers
by (question, client) in a table of its own, bounded; one that reads .Question.Name by the name as
spelt; one that reads .Message.Id is built for every query, on the slow path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import dns.edns
import dns.rcode
from prometheus_client.core import CounterMetricFamily, Metric

from interkube.dns.message import make_response, render
from interkube.dns.mnemonics import class_name, type_name
from interkube.dns.names import ZoneSet
from interkube.dns.wire import FLAG_CD, FLAG_RD, HEADER_LEN, RCODE_SERVFAIL, Query, Template, error_response
from interkube.pkg.metrics import NAMESPACE
from interkube.pkg.shared import Kind
from interkube.plugin.answers import INLINE_BUILDS, PASS, SERVFAIL, Deferred, Entry, TemplateHandler, TemplateTable
from interkube.plugin.request import Request
from interkube.plugins.template.gotemplate import DEP_CASE, DEP_CLIENT, DEP_QUERY, Data, TemplateExecError
from interkube.plugins.template.parse import ANY, RecordTemplate, TemplateConfig
from interkube.plugins.template.records import RecordError, parse_record

log = logging.getLogger("interkube.plugin.template")

#: Answers kept per (question, client) for templates that read .Remote: every client address
#: makes its own, so these are bounded well below a question table (the oldest go first).
CLIENT_ANSWERS = 10_000
#: Bytes that miekg/dns writes with a backslash in a name's text (CoreDNS's .Name is that text).
_ESCAPED = frozenset(b".' @;()\"\\")

Cell = list[int]  # one counter, shared by the answers that count into it


def name_text(wire_name: bytes) -> str:
    """An uncompressed wire name as CoreDNS's template sees it: miekg's presentation form, which
    escapes a little differently from dnspython's (a space as ``\\ ``, ``$`` as is). Given the
    lower-cased name, this is .Name; given the name as the client spelt it, .Question.Name."""
    labels = []
    off = 0
    length = wire_name[0]
    while length:
        label = wire_name[off + 1:off + 1 + length]
        labels.append("".join("\\" + chr(b) if b in _ESCAPED else chr(b) if 0x20 < b < 0x7F else f"\\{b:03d}"
                              for b in label))
        off += length + 1
        length = wire_name[off]
    return ".".join(labels) + "." if labels else "."


class TemplateStats:
    """The counts behind CoreDNS's template metrics: one set per process, as CoreDNS's are, so
    that reloads keep them and two template directives with the same labels add up; each answer
    holds the cells it counts into (a list item incremented per query, no call)."""

    __slots__ = ("matches", "template_failures", "rr_failures")

    def __init__(self) -> None:
        self.matches: dict[tuple[str, ...], Cell] = {}
        self.template_failures: dict[tuple[str, ...], Cell] = {}
        self.rr_failures: dict[tuple[str, ...], Cell] = {}

    @staticmethod
    def cell(table: dict[tuple[str, ...], Cell], labels: tuple[str, ...]) -> Cell:
        found = table.get(labels)
        if found is None:
            found = table[labels] = [0]
        return found

    def collect(self) -> Iterable[Metric]:
        """CoreDNS's template metrics, under the interkube_ namespace."""
        for name, help_text, table, extra in (
                ("matches", "Counter of template regex matches.", self.matches, ()),
                ("template_failures", "Counter of go template failures.", self.template_failures,
                 ("section", "template")),
                ("rr_failures", "Counter of mis-templated RRs.", self.rr_failures, ("section", "template"))):
            family = CounterMetricFamily(f"{NAMESPACE}_template_{name}", help_text,
                                         labels=["server", "zone", "view", "class", "type", *extra])
            for labels, cell in list(table.items()):
                family.add_metric(list(labels), cell[0])
            yield family


TEMPLATE_STATS = Kind("template statistics", TemplateStats)


class _Counted(Template):
    """A template that counts the queries it answers (interkube_template_matches_total)."""

    __slots__ = ("cell",)

    def __init__(self, response: bytes, query: Query, cell: Cell) -> None:
        super().__init__(response, query.question_end)
        self.cell = cell

    def render(self, query: Query) -> bytes:
        self.cell[0] += 1
        wire = query.wire
        return wire[:2] + self.head + wire[HEADER_LEN:query.question_end] + self.body


class _Failure:
    """SERVFAIL after a match (`rcode SERVFAIL`, or a template that failed), counted per query
    as CoreDNS counts it: the match, and the failure if there was one."""

    __slots__ = ("cells",)

    def __init__(self, *cells: Cell) -> None:
        self.cells = cells

    def render(self, query: Query) -> bytes:
        for cell in self.cells:
            cell[0] += 1
        return error_response(query.wire, RCODE_SERVFAIL, query)


class _Once:
    """An answer built for one query (a template that reads .Message.Id)."""

    __slots__ = ("response",)

    def __init__(self, response: bytes) -> None:
        self.response = response

    def render(self, query: Query) -> bytes:
        return self.response


class _EachQuery:
    """Kept for a question whose answers are built per query: it matched (so is not passed on)."""

    def render(self, query: Query) -> bytes:
        raise AssertionError("an answer built per query is never rendered from the table")


_EACH_QUERY = _EachQuery()


class TemplatingHandler(TemplateHandler):
    plugin = "template"

    def __init__(self, cfg: TemplateConfig, zones: tuple[str, ...], server: str = "",
                 stats: TemplateStats | None = None) -> None:
        self.cfg = cfg
        self.zone_set = ZoneSet(zones)
        self.server = server
        self.stats = stats or TemplateStats()
        depends = cfg.depends
        self.by_client = DEP_CLIENT in depends
        self.by_case = DEP_CASE in depends
        self.per_query = DEP_QUERY in depends
        self.templates = TemplateTable(CLIENT_ANSWERS if self.by_client else 100_000)
        self.sections = tuple((name, cfg.section(name)) for name in ("answer", "additional", "authority"))
        self._reported: set[RecordTemplate] = set()

    # -- answering --------------------------------------------------------------------------

    def template(self, req: Request) -> Entry:
        q = req.query
        zone = self.zone_set.match(q.lname)
        if zone is None:
            return PASS
        key = q.key
        if self.by_case:
            key += req.wire[HEADER_LEN:q.qname_end]
        if self.by_client:
            key += b"\x00" + req.client_ip.encode()
        entry = self.templates.get(key)
        if entry is None:
            started = INLINE_BUILDS.begin()
            entry = self.build(req, zone)
            INLINE_BUILDS.end(started)
            # (every answer is made from the question: one per asked name, bounded as such)
            self.templates.put(key, _EACH_QUERY if isinstance(entry, _Once) else entry, synthesized=True)
        elif entry is _EACH_QUERY:
            if not INLINE_BUILDS.serving:
                raise Deferred  # built per query: the slow path's work
            entry = self.build(req, zone)
        return entry

    def match(self, req: Request, zone: str) -> Data | Entry:
        """The template data when the question is this template's; else PASS or SERVFAIL."""
        q = req.query
        cfg = self.cfg
        if cfg.qclass != ANY and q.qclass != ANY and q.qclass != cfg.qclass:
            return PASS
        if cfg.qtype != ANY and q.qtype != ANY and q.qtype != cfg.qtype:
            return PASS
        name = name_text(q.lname)
        for pattern in cfg.patterns:
            m = pattern.regex.search(name)
            if m is not None:
                break
        else:
            return PASS if cfg.fallthrough.applies(q.lname) else SERVFAIL
        groups = tuple("" if g is None else g for g in (m.group(0), *m.groups()))
        named = {str(i): g for i, g in enumerate(groups)}
        named.update((k, "" if v is None else v) for k, v in m.groupdict().items())
        return Data(zone=zone, name=name, regex=pattern.source, match=groups, group=named,
                    class_=class_name(q.qclass if q.qclass != ANY else cfg.qclass),
                    type_=type_name(q.qtype if q.qtype != ANY else cfg.qtype),
                    remote=req.client_ip if self.by_client else "",
                    qname=name_text(req.wire[HEADER_LEN:q.qname_end]) if self.by_case else "",
                    qtype=q.qtype, qclass=q.qclass,
                    id=int.from_bytes(req.wire[:2], "big") if self.per_query else 0,
                    rd=bool(q.flags & FLAG_RD), cd=bool(q.flags & FLAG_CD))

    def build(self, req: Request, zone: str) -> Entry:
        data = self.match(req, zone)
        if not isinstance(data, Data):
            return data
        stats = self.stats
        labels = (self.server, data.zone, req.route.view, data.class_, data.type_)
        matched = stats.cell(stats.matches, labels)
        cfg = self.cfg
        if cfg.rcode == dns.rcode.SERVFAIL:
            return self._done(req, _Failure(matched))
        response = make_response(req.message)
        response.set_rcode(dns.rcode.Rcode.make(cfg.rcode))
        sections = {"answer": response.answer, "additional": response.additional, "authority": response.authority}
        for section, records in self.sections:
            for record in records:
                try:
                    text = record.template.execute(data)
                except TemplateExecError as exc:
                    self._report(record, data, f"the template failed: {exc}")
                    failed = stats.cell(stats.template_failures, (*labels, section, record.source))
                    return self._done(req, _Failure(matched, failed))
                try:
                    rrset = parse_record(text)
                except RecordError as exc:
                    self._report(record, data, f"{text!r} is not a resource record: {exc}")
                    failed = stats.cell(stats.rr_failures, (*labels, section, record.source))
                    return self._done(req, _Failure(matched, failed))
                sections[section].append(rrset)
        if cfg.ederror is not None and response.edns >= 0:
            option = dns.edns.EDEOption(dns.edns.EDECode.make(cfg.ederror.code), cfg.ederror.reason or None)
            response.use_edns(0, response.ednsflags, response.payload, options=[option])
        wire = render(response)
        if self.per_query:
            matched[0] += 1
            return _Once(wire)
        return _Counted(wire, req.query, matched)

    def _done(self, req: Request, failure: _Failure) -> Entry:
        if self.per_query:
            return _Once(failure.render(req.query))
        return failure

    def _report(self, record: RecordTemplate, data: Data, why: str) -> None:
        """Log the first failure of each record template; the metrics count every one."""
        if record in self._reported:
            return
        self._reported.add(record)
        log.warning("template at %s: %s for %s %s: %s (answering SERVFAIL; later failures of this %s are "
                    "only counted in interkube_template_*_failures_total)", record.where, record.section,
                    data.name, data.type_, why, record.section)
