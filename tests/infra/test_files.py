"""Atomic files: the old content or the whole new one, never a temporary file left behind."""

import stat
from pathlib import Path
from typing import IO

import pytest

from infra.files import write_atomic, write_atomic_with


def test_write_replaces_whole_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "key.pem"
    write_atomic(path, b"old", mode=0o600)
    write_atomic(path, b"new", mode=0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["key.pem"]


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "cal.toml"
    write_atomic(path, b"old")

    def fill(out: IO[bytes]) -> None:
        out.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic_with(path, fill)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cal.toml"]
