"""Reading recorded sessions back: single frames, thumbnails and whole-session tar exports."""

import io
import tarfile
from collections.abc import Iterator
from typing import IO, Any

from hub.storage.lidar import session_csv
from infra.store import ObjectStore
from schemas.dataset import SessionManifest, lidar_key, session_manifest_key, session_prefix
from schemas.shards import ReadStats, Sample, read_shard


def shard_for(manifest: SessionManifest, seq: int) -> str | None:
    for info in manifest.shards:
        if info.seq_first <= seq <= info.seq_last:
            return info.name
    return None


def read_frame(store: ObjectStore, manifest: SessionManifest, seq: int | None) -> Sample | None:
    """The frame ``seq`` (default: the middle one) or None if the session does not hold it."""
    if not manifest.shards:
        return None
    if seq is None:
        middle = manifest.shards[len(manifest.shards) // 2]
        seq = (middle.seq_first + middle.seq_last) // 2
        name: str | None = middle.name
        pick_nearest = True
    else:
        name = shard_for(manifest, seq)
        pick_nearest = False
    if name is None:
        return None
    key = session_prefix(manifest.car, manifest.session) + name
    best: Sample | None = None
    with store.open(key) as fh:
        for sample in read_shard(fh, ReadStats()):
            if sample.seq == seq:
                return sample
            if pick_nearest and (best is None or abs(sample.seq - seq) < abs(best.seq - seq)):
                best = sample
    return best


def frame_actions(store: ObjectStore, manifest: SessionManifest, limit: int) -> list[dict[str, Any]]:
    """Seq, capture time, steering, throttle and mode of every frame (at most ``limit``, evenly
    spread), for a scrubber: the JPEGs are read past, not decoded."""
    every = max(1, -(-manifest.frame_count // limit)) if manifest.frame_count else 1
    out: list[dict[str, Any]] = []
    for info in manifest.shards:
        with store.open(session_prefix(manifest.car, manifest.session) + info.name) as fh:
            for sample in read_shard(fh, ReadStats()):
                if (sample.seq - (manifest.seq_first or 0)) % every:
                    continue
                r = sample.record
                out.append(
                    {k: r.get(k) for k in ("seq", "t_capture_ns", "steering", "throttle", "mode", "speed")}
                )
    return out[:limit]


MAX_SOURCE_PIXELS = 4096 * 4096  # far above any car camera; 48 MB decoded at worst


class ImageTooLarge(ValueError):
    """A frame whose header claims more pixels than the hub decodes (a decompression bomb)."""


def thumbnail(jpeg: bytes, size: int) -> bytes:
    """A JPEG no larger than ``size`` pixels on its longer side.

    The header's size is checked before anything is decoded, and JPEGs are decoded at the smallest
    DCT scale that still covers ``size`` (PIL's draft mode), so a hostile header costs nothing.
    Raises :class:`ImageTooLarge`, or ``OSError`` for an undecodable image.
    """
    from PIL import Image

    try:
        src = Image.open(io.BytesIO(jpeg))
    except Image.DecompressionBombError:  # PIL's own limit, checked on open
        raise ImageTooLarge(f"the image claims more than {MAX_SOURCE_PIXELS} pixels") from None
    with src:
        width, height = src.size
        if width * height > MAX_SOURCE_PIXELS:
            raise ImageTooLarge(
                f"the image claims {width}x{height} pixels, more than the {MAX_SOURCE_PIXELS} decoded"
            )
        src.draft("RGB", (size, size))
        img = src.convert("RGB")
    img.thumbnail((size, size))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


class _Pipe(io.RawIOBase):
    """A write-only sink whose bytes are collected chunk by chunk for streaming."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.chunks.append(data)
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def export_tar(store: ObjectStore, manifest: SessionManifest) -> Iterator[bytes]:
    """Stream a tar of the session as it lies in the store: manifest.json, its shards and, where
    it has scans, lidar.csv, under ``datasets/{car}/{session}/`` (so extracting it into a store
    directory restores the session)."""
    pipe = _Pipe()
    prefix = session_prefix(manifest.car, manifest.session)
    with tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def add(key: str, size: int, fh: IO[bytes]) -> None:
            info = tarfile.TarInfo(key)
            info.size = size
            info.mtime = int(manifest.updated)
            tar.addfile(info, fh)

        data = manifest.to_json()
        add(session_manifest_key(manifest.car, manifest.session), len(data), io.BytesIO(data))
        yield pipe.take()
        for shard in manifest.shards:
            with store.open(prefix + shard.name) as fh:
                add(prefix + shard.name, store.size(prefix + shard.name), fh)
            yield pipe.take()
        scans = session_csv(store.list(prefix), manifest.car, manifest.session, store.get)
        if scans is not None:
            add(lidar_key(manifest.car, manifest.session), len(scans), io.BytesIO(scans))
    yield pipe.take()
