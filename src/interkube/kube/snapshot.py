"""A cluster from files: Kubernetes List documents as ``kubectl get ... -o yaml`` (or json) writes.

``kubectl get services,endpointslices,pods -A -o yaml > east.yaml`` gives one ``kind: List``
document; this reads that, lists of one kind (``ServiceList`` from the API, whose items carry no
kind), single objects, and several YAML documents in a file. Services, EndpointSlices, Pods,
Namespaces (``kubectl get namespaces,services,...``: empty namespaces then exist) and the MCS
ServiceExport and ServiceImport objects are read; other kinds are passed over. JSON is
decoded with msgspec straight into the few fields DNS needs (no dicts are built), so a snapshot
of a large cluster loads in little memory.

The files are checked every few seconds; when one changes, all are read again into a new index
which replaces the old in one step. A reload that does not look like a cluster is refused, and
the data being served is kept (reported once per change, and counted by reason):

* ``invalid``: a file that cannot be parsed (not YAML or JSON, not a mapping; JSON cut short);
* ``incomplete``: a document that is not a complete List: ``items`` without a ``kind`` ending
  in ``List``, or such a kind without ``items``. kubectl writes ``kind: List`` after the items,
  so YAML cut short while ``kubectl get ... > FILE`` is writing it still parses and lacks it;
* ``empty``: a file that gave objects and now gives none (``> FILE`` truncates it first; a
  failed kubectl leaves it empty; YAML such as ``hello: world`` holds no Kubernetes object);
* ``drop``: the files would give more than ``max_drop`` percent fewer objects than are served.

At start-up there is nothing to keep: an invalid file or an incomplete List stops the
configuration, and a file with no objects gives an empty cluster (with a warning). Tools that
write snapshots write a temporary file and rename it into place
(:func:`interkube.pkg.atomicfile.replacing`; in a shell, ``> FILE.tmp && mv FILE.tmp FILE``),
so that a check never finds one half written.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import yaml

from interkube.errors import KubeError
from interkube.kube.cluster import Cluster
from interkube.kube.filters import Filters
from interkube.kube.index import ClusterIndex
from interkube.kube.objects import (
    KINDS,
    Kind,
    MalformedObject,
    Read,
    identity_from_dict,
    identity_from_json,
)
from interkube.pkg.filewatch import Stamp, stamp
from interkube.pkg.ticker import Interval, Ticker

log = logging.getLogger("interkube.plugin.kubernetes")

#: The part of a snapshot source that can fail (see Cluster.lost).
FILES = "files"
#: How often the files are checked for changes, in seconds. Read when a source starts, so
#: tests may lower it.
CHECK_INTERVAL = 2.0
#: The default largest share (percent) of a cluster's objects a reload may remove.
DEFAULT_MAX_DROP = 50

#: Why a reload was refused (the ``reason`` label of the refusals metric).
INVALID = "invalid"
INCOMPLETE = "incomplete"
EMPTY = "empty"
DROP = "drop"
#: What a refusal log line suggests, since the usual cause is a file written in place.
_HINT = "write snapshot files to a temporary name and rename them into place"

#: One object as read from a file: raw JSON, or a mapping parsed from YAML.
Wire = bytes | msgspec.Raw | Mapping[str, Any]
_STR = "tag:yaml.org,2002:str"


class SnapshotError(KubeError):
    """A snapshot file cannot be read or is not YAML/JSON."""


class IncompleteList(SnapshotError):
    """A document is a List cut short (or never finished): items without a List kind, or a List
    kind without items."""


def _check_list(path: str, kind: str, items_key: bool, items_list: bool) -> None:
    """Raise IncompleteList unless a document with an ``items`` key is a ``*List`` and a
    ``*List`` has a list of items."""
    is_list = kind.endswith("List")
    if items_key and not is_list:
        what = f"its kind is {kind!r}" if kind else "it has no kind"
        raise IncompleteList(f"{path}: not a complete List: it has items but {what} (a file cut short, "
                             "as while `kubectl get ... > FILE` is writing it?)")
    if is_list and not items_list:
        raise IncompleteList(f"{path}: not a complete List: a {kind} without a list of items")


class _Peek(msgspec.Struct):
    kind: str = ""
    apiVersion: str = ""
    items: list[msgspec.Raw] | None = None


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


_BY_GROUP_KIND: dict[tuple[str, str], Kind[Any]] = {(_group(k.api_version), k.kind): k for k in KINDS}


def kind_of(kind: str, api_version: str, list_kind: str = "") -> Kind[Any] | None:
    """The Kind of an object (items of a ``ServiceList`` carry no kind of their own)."""
    if not kind and list_kind.endswith("List"):
        kind = list_kind[:-4]
    if not api_version:
        return next((k for k in KINDS if k.kind == kind), None)
    return _BY_GROUP_KIND.get((_group(api_version), kind))


def _json_objects(raw: bytes, path: str) -> Iterator[tuple[Kind[Any] | None, Wire]]:
    try:
        doc = msgspec.json.decode(raw, type=_Peek)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SnapshotError(f"{path}: not a Kubernetes JSON document: {exc}") from None
    _check_list(path, doc.kind, doc.items is not None, doc.items is not None)
    if doc.items is None:
        yield kind_of(doc.kind, doc.apiVersion), raw
        return
    for item in doc.items:
        try:
            peek = msgspec.json.decode(item, type=_Peek)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # not an object with a kind: nothing DNS reads
        yield kind_of(peek.kind, peek.apiVersion, doc.kind), item


class _Events:
    """PyYAML's event stream with one event of look-ahead, and objects built from it.

    A List is read one item at a time: yaml.load_all would build the whole document first,
    which for a 19 MB kubectl dump peaks near 800 MB of Python objects (measured), more than a
    DNS pod's memory limit. Events come from libyaml when PyYAML has it.
    """

    def __init__(self, raw: bytes) -> None:
        import yaml  # here, not at the top: a server reading the API or JSON files never loads it (1 MiB)

        self._it = yaml.parse(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        self._constructor = yaml.constructor.SafeConstructor()
        self._resolver = yaml.resolver.Resolver()
        self.peeked: yaml.Event | None = None

    def next(self) -> yaml.Event:
        if self.peeked is not None:
            event, self.peeked = self.peeked, None
            return event
        return next(self._it)

    def peek(self) -> yaml.Event:
        if self.peeked is None:
            self.peeked = next(self._it)
        return self.peeked

    def value(self, event: yaml.Event) -> Any:
        """The object that starts with ``event`` (its remaining events are consumed)."""
        import yaml  # (loaded by __init__: a dict lookup)

        if isinstance(event, yaml.ScalarEvent):
            tag = event.tag
            if tag is None or tag == "!":
                if event.style is not None and event.implicit[1]:
                    return event.value  # quoted: a string, whatever it looks like
                tag = self._resolver.resolve(  # type: ignore[no-untyped-call]  # unannotated in types-PyYAML
                    yaml.ScalarNode, event.value, event.implicit)
            if tag == _STR:
                return event.value
            # The tag's constructor, called directly: construct_object() would also remember
            # every node it ever built (for anchors), which is the memory this reader avoids.
            make = self._constructor.yaml_constructors.get(tag)
            if make is None:
                raise yaml.YAMLError(f"unsupported tag {tag}")
            return make(self._constructor, yaml.ScalarNode(tag, event.value, style=event.style))
        if isinstance(event, yaml.MappingStartEvent):
            out: dict[Any, Any] = {}
            while not isinstance(self.peek(), yaml.MappingEndEvent):
                key = self.value(self.next())
                out[key] = self.value(self.next())
            self.next()
            return out
        if isinstance(event, yaml.SequenceStartEvent):
            seq = []
            while not isinstance(self.peek(), yaml.SequenceEndEvent):
                seq.append(self.value(self.next()))
            self.next()
            return seq
        if isinstance(event, yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not used in kubectl output and are not supported")
        raise yaml.YAMLError(f"unexpected {type(event).__name__}")


def _yaml_objects(raw: bytes, path: str) -> Iterator[tuple[Kind[Any] | None, Wire]]:
    import yaml

    try:
        yield from _stream_yaml(_Events(raw), path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise SnapshotError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def _stream_yaml(ev: _Events, path: str) -> Iterator[tuple[Kind[Any] | None, Wire]]:
    import yaml

    while True:
        event = ev.next()
        if isinstance(event, yaml.StreamEndEvent):
            return
        if not isinstance(event, yaml.DocumentStartEvent):
            continue
        start = ev.next()
        if isinstance(start, yaml.ScalarEvent) and start.value in ("", "~", "null") and start.implicit[0]:
            ev.next()  # an empty document
            continue
        if not isinstance(start, yaml.MappingStartEvent):
            raise SnapshotError(f"{path}: a document is not a mapping of a Kubernetes object or List")
        top: dict[Any, Any] = {}
        waiting: list[Mapping[str, Any]] = []  # items without a kind, until the List's kind is known
        streamed = False
        while not isinstance(ev.peek(), yaml.MappingEndEvent):
            key = ev.value(ev.next())
            if key == "items" and isinstance(ev.peek(), yaml.SequenceStartEvent):
                streamed = True
                ev.next()
                while not isinstance(ev.peek(), yaml.SequenceEndEvent):
                    item = ev.value(ev.next())
                    if not isinstance(item, Mapping):
                        continue
                    if item.get("kind"):
                        yield kind_of(str(item["kind"]), str(item.get("apiVersion") or "")), item
                    else:
                        waiting.append(item)
                ev.next()
            else:
                top[key] = ev.value(ev.next())
        ev.next()  # end of the mapping
        # Raised after the items were yielded: the reader discards what it built from them.
        _check_list(path, str(top.get("kind") or ""), streamed or "items" in top, streamed)
        if streamed:
            list_kind = str(top.get("kind") or "")
            for item in waiting:
                yield kind_of("", str(item.get("apiVersion") or ""), list_kind), item
        else:
            yield kind_of(str(top.get("kind") or ""), str(top.get("apiVersion") or "")), top


def read_objects(path: str) -> Iterator[tuple[Kind[Any] | None, Wire]]:
    """(Kind or None for kinds DNS does not read, the object) for every object in a file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None
    head = raw.lstrip()[:1]
    if head in (b"{", b"["):
        return _json_objects(raw, path)
    return _yaml_objects(raw, path)


@dataclass
class Snapshot:
    """What the files gave: the index, how many objects each file gave, and the documents that
    are not complete Lists (their objects are in the index and counts up to where they end)."""

    index: ClusterIndex
    per_file: dict[str, int] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return object_count(self.index)


def object_count(index: ClusterIndex | None) -> int:
    """The objects of an index, as its counts (and the log lines) give them."""
    return sum(index.counts().values()) if index is not None else 0


def read_snapshot(paths: tuple[str, ...], filters: Filters, cluster: Cluster) -> Snapshot:
    """Every object in ``paths`` that ``filters`` keeps, with what a reload is judged on.

    Raises SnapshotError for a file that cannot be read or parsed; an incomplete List is
    recorded instead, so that the reader can say what it would have given.
    """
    snap = Snapshot(ClusterIndex())
    wanted = {k.resource for k in filters.kinds()}
    for path in paths:
        kept = 0
        try:
            for kind, obj in read_objects(path):
                if kind is None or kind.resource not in wanted:
                    continue
                try:
                    read: Read = kind.from_dict(obj) if isinstance(obj, Mapping) else kind.from_json(obj)
                except MalformedObject as exc:
                    ident = identity_from_dict(obj) if isinstance(obj, Mapping) else identity_from_json(obj)
                    cluster.skipped(kind.resource, ident, f"{exc} (in {path})")
                    continue
                record = filters.keep(kind, read)
                if record is not None:
                    snap.index.put(kind.resource, (read.namespace, read.name), record)
                    kept += 1
        except IncompleteList as exc:
            snap.incomplete.append(str(exc))
        snap.per_file[path] = kept
    return snap


def build_index(paths: tuple[str, ...], filters: Filters, cluster: Cluster) -> ClusterIndex:
    """A new index from every object in ``paths`` that ``filters`` keeps; SnapshotError for a
    file that cannot be read or parsed, or is not a complete List."""
    snap = read_snapshot(paths, filters, cluster)
    if snap.incomplete:
        raise IncompleteList(snap.incomplete[0])
    return snap.index


def _check_interval() -> float:
    return CHECK_INTERVAL


def _objects(n: int) -> str:
    return f"{n} object{'' if n == 1 else 's'}"


class SnapshotSource:
    """Snapshot files as a cluster's source; re-read when they change.

    ``max_drop`` is the largest share (percent, 0 to 100) of the served objects a reload may
    remove; 100 turns that check off. ``interval`` defaults to CHECK_INTERVAL as it is when
    the source starts.
    """

    def __init__(self, paths: tuple[str, ...], filters: Filters, interval: Interval | None = None,
                 max_drop: int = DEFAULT_MAX_DROP) -> None:
        self.paths = tuple(os.path.abspath(p) for p in paths)
        self.filters = filters
        self.interval: Interval = _check_interval if interval is None else interval
        self.max_drop = max_drop
        # max_drop is part of the key: a configuration that changes it reads the files afresh
        # (as at start-up) rather than sharing the running cluster, which is how a refused
        # reload can be taken on purpose.
        self.key = ("snapshot", self.paths, filters, max_drop)
        self.description = "snapshot " + ", ".join(self.paths)
        self._stamps: tuple[Stamp, ...] | None = None
        #: Objects each file gave to the data being served.
        self._per_file: dict[str, int] = {}
        #: Why the files as they are now are not being served (None: they are).
        self.refused: str | None = None
        self._ticker: Ticker | None = None

    def load(self, cluster: Cluster) -> ClusterIndex:
        """Read every file now (at setup: a bad file or an incomplete List stops the
        configuration; a file with no objects gives an empty cluster, with a warning)."""
        stamps = tuple(self._stamp_or_raise(p) for p in self.paths)
        snap = read_snapshot(self.paths, self.filters, cluster)
        if snap.incomplete:
            raise IncompleteList(snap.incomplete[0])
        for path, n in snap.per_file.items():
            if n == 0:
                log.warning("cluster %s: snapshot %s holds no objects to serve (an empty file?); its names "
                            "answer NXDOMAIN until it does", cluster.name, path)
        self._stamps = stamps
        self._per_file = snap.per_file
        self.refused = None
        return snap.index

    def _stamp_or_raise(self, path: str) -> Stamp:
        try:
            return stamp(path)
        except OSError as exc:
            raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from None

    async def start(self, cluster: Cluster) -> None:
        if cluster.index is None:
            cluster.replace(await asyncio.to_thread(self.load, cluster))
        else:
            log.info("cluster %s: serving %s (%s)", cluster.name, self.description, cluster.describe_data())

        async def tick() -> None:
            await self.check(cluster)

        self._ticker = Ticker(self.interval, tick, log)
        self._ticker.start()

    async def stop(self) -> None:
        if self._ticker is not None:
            await self._ticker.stop()
            self._ticker = None

    async def check(self, cluster: Cluster) -> bool:
        """Read the files again if any changed; True when new data was swapped in."""
        try:
            stamps = tuple(self._stamp_or_raise(p) for p in self.paths)
        except SnapshotError as exc:
            cluster.lost(str(exc), FILES)
            return False
        if self.refused is None:
            cluster.contact(FILES)
        else:
            # The files are readable, but what is served is not what they hold: the data's age
            # (sync_age_seconds) keeps growing until a reload is taken.
            cluster.restored(FILES)
        if stamps == self._stamps:
            return False
        # Recorded before parsing: a broken file is reported once per change, not per check.
        self._stamps = stamps
        before = object_count(cluster.index)
        try:
            snap = await asyncio.to_thread(read_snapshot, self.paths, self.filters, cluster)
        except SnapshotError as exc:
            self._refuse(cluster, INVALID, str(exc))
            return False
        why = self._judge(snap, before)
        if why is not None:
            self._refuse(cluster, *why)
            return False
        was = cluster.describe_data()
        self._per_file = snap.per_file
        self.refused = None
        cluster.relisted()
        cluster.replace(snap.index)
        log.info("cluster %s: reloaded %s: %d -> %s (%s; was %s)", cluster.name, self.description, before,
                 _objects(snap.total), cluster.describe_data(), was)
        return True

    def _judge(self, snap: Snapshot, before: int) -> tuple[str, str] | None:
        """(reason, words) when ``snap`` must not replace data of ``before`` objects; None when it may."""
        after = snap.total
        counts = f"{before} -> {_objects(after)}"
        if snap.incomplete:
            return INCOMPLETE, f"{'; '.join(snap.incomplete)}; {counts}"
        emptied = [p for p, n in snap.per_file.items() if n == 0 and self._per_file.get(p, 0) > 0]
        if emptied:
            files = "; ".join(f"{p} gave {_objects(self._per_file[p])} and now gives none" for p in emptied)
            return EMPTY, f"{files} (an empty or half-written file?); {counts}"
        if self.max_drop < 100 and (before - after) * 100 > self.max_drop * before:
            share = (before - after) * 100 // before
            return DROP, (f"{', '.join(self.paths)}: {counts}, {share}% fewer, more than the {self.max_drop}% "
                          "that snapshot_max_drop allows")
        return None

    def _refuse(self, cluster: Cluster, reason: str, words: str) -> None:
        self.refused = reason
        stats = cluster.stats.refused
        stats[reason] = stats.get(reason, 0) + 1
        # ``words`` name the file(s) first (with the line, where the parser gives one).
        log.warning("cluster %s: not reloading the snapshot: %s; serving the previous data (%s) until the files "
                    "change (%s)", cluster.name, words, cluster.describe_data(), _HINT)
