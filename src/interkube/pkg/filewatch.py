"""Files read again when they change: a cheap stamp and the read.

Shared by *file* and *hosts* (both poll their file, as CoreDNS does, rather than rely on inotify,
which misses Kubernetes ConfigMap updates made by swapping a symlink); the polling itself is
:class:`interkube.pkg.ticker.Ticker`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Generic, TypeVar

from interkube.errors import InterkubeError

#: (inode, size, mtime in ns): changes when the file is rewritten in place or replaced by a
#: rename, which is how ConfigMap volumes and most editors update files.
Stamp = tuple[int, int, int]
T = TypeVar("T")


def stamp(path: str) -> Stamp:
    """The file's current stamp; raises OSError when it cannot be stat'ed."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class WatchedFile(Generic[T]):
    """A file and what ``parse`` made of it, read again only when its stamp changed.

    ``parse`` turns the file's bytes into data and may raise an InterkubeError for a file it
    cannot take. The stamp is recorded before parsing, so a broken file is reported once per
    change; a file that cannot be read is reported once until it can be again.
    """

    def __init__(self, path: str, parse: Callable[[bytes], T], log: logging.Logger) -> None:
        self.path = path
        self.parse = parse
        self.log = log
        self.stamp: Stamp | None = None
        #: The last attempt could not read the file (so the next failure is not logged again).
        self.unreadable = False

    def read(self) -> T:
        """Read and parse the file now; raises OSError or parse's error."""
        st = stamp(self.path)
        with open(self.path, "rb") as f:
            raw = f.read()
        self.stamp = st
        if self.unreadable:
            self.log.info("%s is readable again", self.path)
            self.unreadable = False
        return self.parse(raw)

    def read_if_changed(self) -> T | None:
        """The data parsed again, or None when the file has not changed since the last read."""
        if self.stamp is not None and stamp(self.path) == self.stamp:
            return None
        return self.read()

    async def poll(self) -> T | None:
        """:meth:`read_if_changed` off the event loop; None (after logging) when it fails."""
        try:
            return await asyncio.to_thread(self.read_if_changed)
        except OSError as exc:
            if not self.unreadable:
                self.log.warning("cannot read %s (%s); serving what it held before", self.path,
                                 exc.strerror or exc)
                self.unreadable = True
        except InterkubeError as exc:
            self.log.error("not reloading %s: %s", self.path, exc)
        return None
