"""Files replaced in one rename: a reader sees the old content or the new, never a part."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from interkube.pkg.atomicfile import replacing, write_atomically


def test_the_file_is_replaced_whole_and_nothing_is_left_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "east.yaml"
    path.write_text("old\n")
    inode = path.stat().st_ino
    with open(path) as reader:
        with replacing(path) as f:
            f.write("new\n")
            assert path.read_text() == "old\n"   # nothing shows until the block ends
            f.write("more\n")
        assert reader.read() == "old\n"   # a reader that had the old file open reads it whole
    assert path.read_text() == "new\nmore\n" and path.stat().st_ino != inode  # another file, renamed in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["east.yaml"]
    write_atomically(path, b"\x00bytes")
    write_atomically(tmp_path / "fresh.yaml", "text", fsync=False)
    assert path.read_bytes() == b"\x00bytes" and (tmp_path / "fresh.yaml").read_text() == "text"


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "east.yaml"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), replacing(path) as f:
        f.write("half")
        raise RuntimeError("kubectl failed")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["east.yaml"]


def test_a_new_file_gets_the_permissions_of_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomically(tmp_path / "snap.yaml", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "snap.yaml").stat().st_mode) == 0o640
