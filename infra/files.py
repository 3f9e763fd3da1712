"""Files that survive a power cut: an atomic replace (temporary file, fsync, rename, fsync of the
directory) and the directory fsync that makes a new or renamed name durable."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (a new file, a rename) durable; a no-op where it cannot be opened
    (some filesystems refuse ``open`` on a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic_with(
    path: Path, fill: Callable[[IO[bytes]], object], *, mode: int = 0o644, durable: bool = True
) -> None:
    """Write ``path`` through ``fill(file)``: readers see the old content or the whole new one.

    ``durable=False`` skips both fsyncs, for files that may lag behind (a spool's head marker) but
    must never be torn.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            fill(out)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`write_atomic_with`)."""
    write_atomic_with(path, lambda out: out.write(data), mode=mode, durable=durable)


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`write_atomic`'s temporary files (left by a crash)."""
    return name.startswith(".") and ".tmp-" in name
