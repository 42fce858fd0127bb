"""Writing a file that another process polls: all of it or none of it, never half.

A reader that polls a file (a snapshot cluster, *hosts*, *file*) may look at any moment. Writing
in place (``open(path, "w")``, a shell's ``>``) first truncates the file, so a reader can see it
empty or cut short. :func:`replacing` writes a temporary file next to the target and renames it
over the target once complete: rename within one filesystem is atomic, so a reader sees the old
file or the new one. The shell's equivalent is ``cmd > FILE.tmp && mv FILE.tmp FILE``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload


@overload
def replacing(path: str | os.PathLike[str], mode: Literal["w"] = "w", *, encoding: str = "utf-8",
              fsync: bool = True) -> contextlib.AbstractContextManager[IO[str]]: ...


@overload
def replacing(path: str | os.PathLike[str], mode: Literal["wb"], *, encoding: str = "utf-8",
              fsync: bool = True) -> contextlib.AbstractContextManager[IO[bytes]]: ...


def replacing(path: str | os.PathLike[str], mode: Literal["w", "wb"] = "w", *, encoding: str = "utf-8",
              fsync: bool = True) -> contextlib.AbstractContextManager[IO[Any]]:
    """``with replacing(path) as f: f.write(...)``: ``path`` gets what was written when the block
    ends without an exception, in one rename; on an exception it is left as it was.

    The temporary file is created next to ``path`` (a rename does not cross filesystems) with
    the permissions a new file gets (0666 less the umask). ``fsync`` flushes it to disk before
    the rename, so that a crash cannot leave an empty file under the old name.
    """
    return _replacing(Path(path), mode, encoding, fsync)


@contextlib.contextmanager
def _replacing(path: Path, mode: str, encoding: str, fsync: bool) -> Iterator[IO[Any]]:
    # A dot name, so that globs and directory watchers that skip hidden files skip it too.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with open(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomically(path: str | os.PathLike[str], data: str | bytes, *, encoding: str = "utf-8",
                     fsync: bool = True) -> None:
    """Replace ``path``'s content with ``data`` in one rename (see :func:`replacing`)."""
    if isinstance(data, bytes):
        with replacing(path, "wb", fsync=fsync) as fb:
            fb.write(data)
    else:
        with replacing(path, "w", encoding=encoding, fsync=fsync) as ft:
            ft.write(data)
