"""Recorded lidar scans, as the simulator's capture writes them: ``lidar.csv`` in the session's
folder, one row per scan (``seq, t_s, x, y, yaw`` then one column per beam, metres).

A car with a lidar sends each scan in its frame's header (``FrameRecord.lidar``), so scans arrive
exactly as loss-free as frames. The sealer writes the rows of every shard as ``lidar-{n:06d}.csv``
next to it (before the shard, so a shard never lacks its scans) and merges the parts into
``lidar.csv`` when the session closes: rewriting one growing object at every shard would read the
whole session's scans again each time.
"""

import csv
import io
import math
import re
from collections.abc import Callable, Container, Iterable

from schemas.dataset import lidar_columns, lidar_key, lidar_row, session_prefix
from schemas.shards import Sample

_PART = re.compile(r"lidar-\d{6}\.csv$")


def scan_rows(samples: Iterable[Sample]) -> list[list[str]]:
    """The ``lidar.csv`` rows of the samples that carry a scan, in their order."""
    return [row for s in samples if (row := lidar_row(s.record)) is not None]


def rows_csv(rows: list[list[str]]) -> bytes | None:
    """CSV text of scan rows under the header of the widest (None without rows)."""
    if not rows:
        return None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(lidar_columns(max(len(r) for r in rows) - 5))
    writer.writerows(rows)
    return out.getvalue().encode()


def part_csv(samples: Iterable[Sample]) -> bytes | None:
    """The ``lidar-{n}.csv`` of a shard's samples, or None if no sample carries a scan."""
    return rows_csv(scan_rows(samples))


def part_keys(keys: Iterable[str], car: str, session: str) -> list[str]:
    """The session's lidar parts among ``keys`` (a listing of its folder), in shard order."""
    prefix = session_prefix(car, session)
    return sorted(k for k in keys if k.startswith(prefix) and _PART.fullmatch(k[len(prefix) :]))


def merged_csv(parts: list[str], get: Callable[[str], bytes]) -> bytes | None:
    """``lidar.csv`` from the parts (one header, rows in seq order), or None without any rows."""
    rows = [row for key in parts for row in list(csv.reader(io.StringIO(get(key).decode())))[1:]]
    return rows_csv(sorted(rows, key=lambda r: int(r[0])))


def session_csv(keys: Iterable[str], car: str, session: str, get: Callable[[str], bytes]) -> bytes | None:
    """The session's ``lidar.csv`` among ``keys`` (a listing of its folder), or one merged from its
    parts while the session has not closed; None if it has no scans."""
    if lidar_key(car, session) in keys:
        return get(lidar_key(car, session))
    return merged_csv(part_keys(keys, car, session), get)


def checked_csv(data: bytes, seqs: Container[int]) -> bytes:
    """An uploaded ``lidar.csv``, as it is if it is one: a header of :func:`lidar_columns` and rows
    of that many fields, numbers (an empty pose field allowed), seqs rising and each a frame of the
    session (``seqs``). Raises ``ValueError`` saying what is wrong."""
    try:
        rows = list(csv.reader(io.StringIO(data.decode())))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"lidar.csv is not CSV text: {exc}") from None
    if not rows or len(rows[0]) <= 5 or rows[0] != lidar_columns(len(rows[0]) - 5):
        raise ValueError("lidar.csv must start with the header seq, t_s, x, y, yaw, r000, …")
    last = -1
    for n, row in enumerate(rows[1:], start=2):
        try:
            seq = int(row[0])
            ok = len(row) == len(rows[0]) and all(math.isfinite(float(v)) for v in (row[1], *row[5:]))
            ok = ok and all(v == "" or math.isfinite(float(v)) for v in row[2:5])
        except (ValueError, IndexError):
            ok = False
        if not ok:
            raise ValueError(f"lidar.csv line {n}: not a scan of {len(rows[0]) - 5} ranges")
        if seq <= last or seq not in seqs:
            raise ValueError(f"lidar.csv line {n}: seq {seq} is not the session's next frame")
        last = seq
    return data
