"""LeRobot datasets (format v3.0) in and out of paddock's sessions.

A LeRobotDataset v3.0 directory, as ``lerobot`` 0.4 writes it (``lerobot/datasets/utils.py``)::

    meta/info.json                       codebase_version "v3.0", fps, features (dtype, shape,
                                         names; a video's codec and size), totals, path templates
    meta/stats.json                      per feature: min, max, mean, std, count, q01..q99
    meta/tasks.parquet                   task text (the pandas index) → task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, dataset_from_index,
                                         dataset_to_index, data/ and videos/{key}/ chunk and file
                                         indexes, from_timestamp/to_timestamp, stats/{feature}/*
    data/chunk-000/file-000.parquet      one row per frame: action, observation.state, timestamp,
                                         frame_index, episode_index, index, task_index
    videos/{key}/chunk-000/file-000.mp4  the camera, frame i of an episode at from_timestamp + i/fps

Export writes one episode per session, with ``observation.images.front`` as video (PyAV:
SVT-AV1 as LeRobot does, or H.264), ``action`` = [steering, throttle] (the teacher's label where
recorded, as the trainers read it), ``observation.state`` = [speed] when every frame has one, and
one data, video and episodes file per episode. Timestamps are ``frame_index / fps``: LeRobot
assumes a steady rate; the session's own rate (its median frame interval) is the default ``fps``.
tests/trainer/test_lerobot.py loads the result with ``lerobot``'s own ``LeRobotDataset``.

Import reads a v3.0 dataset with pyarrow and PyAV (no ``lerobot`` needed; it pins torch<2.11) and
writes one sealed session per episode; the camera's frames become JPEGs, ``action``'s steering and
throttle (by name, else its first two values) the frames' actions, clipped to [-1, 1].
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from infra.store import ObjectStore
from schemas.payloads import encode_jpeg
from schemas.shards import Sample
from trainer.interop.sessions import (
    ImportReport,
    InteropError,
    SessionWriter,
    frame_action,
    safe_session_id,
)

CODEBASE_VERSION = "v3.0"
CHUNK_SIZE = 1000  # LeRobot's files per chunk directory
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
CAMERA = "observation.images.front"
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
VCODECS = {"av1": "libsvtav1", "h264": "libx264"}
IMAGE_STATS_FRAMES = 100  # frames per episode sampled for the camera's stats (LeRobot samples too)
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    name: {"dtype": dtype, "shape": [1], "names": None}
    for name, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    )
}


class LeRobotError(InteropError):
    """A directory that is not a LeRobot v3.0 dataset, or sessions that cannot be exported."""


def _need_av() -> Any:
    try:
        import av
    except ImportError:
        from schemas.release import install_hint

        raise LeRobotError(f"LeRobot datasets need PyAV and pyarrow: {install_hint('lerobot')}") from None
    return av


# --- statistics ----------------------------------------------------------------------------------
def feature_stats(values: NDArray[Any], axis: tuple[int, ...] = (0,)) -> dict[str, Any]:
    """LeRobot's per-feature statistics: min, max, mean, std, count and quantiles over ``axis``."""
    data = values.astype(np.float64)
    keep = values.dtype.kind in "iu"
    out: dict[str, Any] = {
        "min": (values.min(axis=axis) if keep else data.min(axis=axis)).tolist(),
        "max": (values.max(axis=axis) if keep else data.max(axis=axis)).tolist(),
        "mean": data.mean(axis=axis).tolist(),
        "std": data.std(axis=axis).tolist(),
        "count": [int(values.shape[0])],
    }
    for name, q in QUANTILES.items():
        out[name] = np.quantile(data, q, axis=axis).tolist()
    return out


def image_stats(frames: NDArray[np.uint8], count: int) -> dict[str, Any]:
    """Per-channel statistics of sampled RGB frames (N, H, W, 3) in [0, 1], shaped (3, 1, 1)."""
    chw = frames.transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    stats = feature_stats(chw, axis=(0, 2, 3))
    out: dict[str, Any] = {k: [[[v]] for v in vals] for k, vals in stats.items() if k != "count"}
    out["count"] = [count]
    return out


# --- export --------------------------------------------------------------------------------------
@dataclass
class Episode:
    """One session on its way out: what goes into the data file and the episode's row."""

    session: str
    actions: list[tuple[float, float]] = field(default_factory=list)
    speeds: list[float | None] = field(default_factory=list)
    sampled: list[NDArray[np.uint8]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.actions)


@dataclass
class ExportReport:
    out: str
    fps: int
    vcodec: str
    episodes: dict[str, int] = field(default_factory=dict)
    frames: int = 0


def session_fps(samples: list[Sample]) -> int:
    """A session's frame rate: 1 / its median frame interval, rounded (at least 1)."""
    times = [int(s.record.get("t_capture_ns", 0)) for s in samples]
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    if not steps:
        return 10
    return max(1, round(1e9 / statistics.median(steps)))


class _VideoFile:
    """One episode's camera as an mp4, frame i at i / fps (PyAV)."""

    def __init__(self, path: Path, fps: int, size: tuple[int, int], vcodec: str) -> None:
        av = _need_av()
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config per file otherwise
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream(VCODECS[vcodec], rate=fps)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        # A keyframe every 2 frames and CRF 30, as LeRobot encodes: its loaders seek to any frame.
        self.stream.options = {"g": "2", "crf": "30"}
        self.frames = 0
        self._frame_cls = av.VideoFrame

    def add(self, rgb: NDArray[np.uint8]) -> None:
        frame = self._frame_cls.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        self.frames += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def _decode_rgb(jpeg: bytes) -> NDArray[np.uint8]:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise LeRobotError("a frame is not a decodable JPEG")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _write_episode(
    out: Path,
    index: int,
    samples: list[Sample],
    fps: int,
    vcodec: str,
    size: tuple[int, int] | None,
    on_frame: Callable[[int], None] | None,
) -> tuple[Episode, tuple[int, int]]:
    episode = Episode(session=str(samples[0].record.get("session", "")))
    chunk, file = divmod(index, CHUNK_SIZE)
    video: _VideoFile | None = None
    every = max(1, len(samples) // IMAGE_STATS_FRAMES)
    try:
        for i, sample in enumerate(samples):
            rgb = _decode_rgb(sample.jpeg)
            shape = (rgb.shape[1], rgb.shape[0])
            if size is None:
                size = shape
            if shape != size or size[0] % 2 or size[1] % 2:
                raise LeRobotError(
                    f"session {episode.session}: frames of {shape[0]}x{shape[1]}, the dataset's video is "
                    f"{size[0]}x{size[1]} (export sessions of one even camera size together)"
                )
            if video is None:
                path = out / VIDEO_PATH.format(video_key=CAMERA, chunk_index=chunk, file_index=file)
                video = _VideoFile(path, fps, size, vcodec)
            video.add(rgb)
            episode.actions.append(frame_action(sample.record))
            speed = sample.record.get("speed")
            episode.speeds.append(float(speed) if isinstance(speed, int | float) else None)
            if i % every == 0:
                episode.sampled.append(rgb[::2, ::2])
            if on_frame:
                on_frame(1)
    finally:
        if video is not None:
            video.close()
    assert size is not None
    return episode, size


def _frame_columns(episode: Episode, index: int, first: int, fps: int, with_state: bool) -> dict[str, Any]:
    n = episode.length
    columns: dict[str, Any] = {}
    if with_state:
        columns["observation.state"] = np.array([s or 0.0 for s in episode.speeds], np.float32)
    columns["action"] = np.array(episode.actions, np.float32).reshape(n, 2)
    columns["timestamp"] = (np.arange(n) / fps).astype(np.float32)
    columns["frame_index"] = np.arange(n, dtype=np.int64)
    columns["episode_index"] = np.full(n, index, np.int64)
    columns["index"] = np.arange(first, first + n, dtype=np.int64)
    columns["task_index"] = np.zeros(n, np.int64)
    return columns


def _arrow_table(columns: dict[str, Any], features: dict[str, dict[str, Any]]) -> Any:
    """A parquet table as HF datasets writes it: 1-value features as scalars, vectors as
    fixed-size lists, and the ``huggingface`` schema metadata LeRobot's loader also accepts."""
    import pyarrow as pa

    arrays, hf = {}, {}
    for name, values in columns.items():
        dtype = features[name]["dtype"]
        if values.ndim == 2:
            flat = pa.array(values.reshape(-1), type=pa.from_numpy_dtype(values.dtype))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
            hf[name] = {
                "feature": {"dtype": dtype, "_type": "Value"},
                "length": values.shape[1],
                "_type": "List",
            }
        else:
            arrays[name] = pa.array(values)
            hf[name] = {"dtype": dtype, "_type": "Value"}
    table = pa.table(arrays)
    return table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": hf}})})


def _features(size: tuple[int, int], fps: int, vcodec: str, with_state: bool) -> dict[str, dict[str, Any]]:
    width, height = size
    features: dict[str, dict[str, Any]] = {
        CAMERA: {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": vcodec,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        },
    }
    if with_state:
        features["observation.state"] = {"dtype": "float32", "shape": [1], "names": ["speed"]}
    features["action"] = {"dtype": "float32", "shape": [2], "names": ["steering", "throttle"]}
    return features | DEFAULT_FEATURES


def export_lerobot(
    sessions: Iterable[list[Sample]],
    out: Path,
    fps: int | None = None,
    task: str = "drive the track",
    robot_type: str = "paddock",
    vcodec: str = "av1",
    on_frame: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write ``sessions`` (each its frames in seq order) as a LeRobot v3.0 dataset in ``out``."""
    import pyarrow.parquet as pq

    if (out / "meta" / "info.json").exists():
        raise LeRobotError(f"{out} already holds a LeRobot dataset; choose an empty directory")
    if vcodec not in VCODECS:
        raise LeRobotError(f"unknown video codec {vcodec!r}; expected one of {', '.join(VCODECS)}")
    _need_av()
    episodes: list[Episode] = []
    size: tuple[int, int] | None = None
    for samples in sessions:
        if not samples:
            continue
        fps = fps or session_fps(samples)
        episode, size = _write_episode(out, len(episodes), samples, fps, vcodec, size, on_frame)
        episodes.append(episode)
    if not episodes or size is None or fps is None:
        raise LeRobotError("no frames to export")
    with_state = all(s is not None for e in episodes for s in e.speeds)
    features = _features(size, fps, vcodec, with_state)
    tables, first = [], 0
    for index, episode in enumerate(episodes):
        columns = _frame_columns(episode, index, first, fps, with_state)
        chunk, file = divmod(index, CHUNK_SIZE)
        path = out / DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_arrow_table(columns, features), path)
        tables.append((columns, first))
        first += episode.length
    _write_meta(out, episodes, tables, features, fps, task, robot_type)
    report = ExportReport(out=str(out), fps=fps, vcodec=vcodec, frames=first)
    report.episodes = {e.session: e.length for e in episodes}
    return report


def _episode_stats(columns: dict[str, Any], episode: Episode) -> dict[str, dict[str, Any]]:
    stats = {CAMERA: image_stats(np.stack(episode.sampled), episode.length)}
    for name, values in columns.items():
        stats[name] = feature_stats(values.reshape(len(values), -1))
    return stats


def _write_meta(
    out: Path,
    episodes: list[Episode],
    tables: list[tuple[dict[str, Any], int]],
    features: dict[str, dict[str, Any]],
    fps: int,
    task: str,
    robot_type: str,
) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for index, (episode, (columns, first)) in enumerate(zip(episodes, tables, strict=True)):
        chunk, file = divmod(index, CHUNK_SIZE)
        row: dict[str, Any] = {
            "episode_index": index,
            "tasks": [task],
            "length": episode.length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": first,
            "dataset_to_index": first + episode.length,
            f"videos/{CAMERA}/chunk_index": chunk,
            f"videos/{CAMERA}/file_index": file,
            f"videos/{CAMERA}/from_timestamp": 0.0,
            f"videos/{CAMERA}/to_timestamp": episode.length / fps,
        }
        for name, stat in _episode_stats(columns, episode).items():
            row |= {f"stats/{name}/{k}": v for k, v in stat.items()}
        row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        rows.append(row)
    (out / EPISODES_FILE).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out / EPISODES_FILE)
    pd.DataFrame({"task_index": [0]}, index=[task]).to_parquet(out / "meta" / "tasks.parquet")
    everything = {
        name: np.concatenate([c[name].reshape(len(c[name]), -1) for c, _ in tables]) for name in tables[0][0]
    }
    stats = {name: feature_stats(values) for name, values in everything.items()}
    sampled = np.concatenate([np.stack(e.sampled) for e in episodes])
    stats[CAMERA] = image_stats(sampled, sum(e.length for e in episodes))
    total = sum(e.length for e in episodes)
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": total,
        "total_tasks": 1,
        "chunks_size": CHUNK_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    (out / "meta" / "stats.json").write_text(json.dumps(stats, indent=4))


# --- import --------------------------------------------------------------------------------------
@dataclass
class Source:
    """What an import takes from a dataset: its camera and where steering and throttle are."""

    root: Path
    info: dict[str, Any]
    camera: str
    steering: int
    throttle: int

    @property
    def fps(self) -> int:
        return int(self.info["fps"])

    @property
    def is_video(self) -> bool:
        return bool(self.info["features"][self.camera]["dtype"] == "video")


def read_info(root: Path) -> dict[str, Any]:
    path = root / "meta" / "info.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise LeRobotError(f"{path}: missing (is {root} a LeRobot dataset?)") from None
    except ValueError as exc:
        raise LeRobotError(f"{path}: not JSON: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise LeRobotError(f"{path}: no features")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise LeRobotError(
            f"{root} is a LeRobot {version or 'unknown-version'} dataset; paddock reads v3.0 "
            "(convert it with lerobot's lerobot.datasets.v30.convert_dataset_v21_to_v30)"
        )
    if not isinstance(info.get("fps"), int | float) or info["fps"] <= 0:
        raise LeRobotError(f"{path}: fps must be a positive number")
    return info


def _axis(action: dict[str, Any], choice: str | None, name: str, default: int) -> int:
    names = action.get("names")
    names = names.get("motors", names.get("axes")) if isinstance(names, dict) else names
    size = int(math.prod(action.get("shape", [0])))
    if choice is None:
        found = [i for i, n in enumerate(names or []) if name in str(n).lower()]
        index = found[0] if found else default
    elif choice.isdigit():
        index = int(choice)
    elif names and choice in names:
        index = list(names).index(choice)
    else:
        raise LeRobotError(f"action has no value {choice!r} (names: {names})")
    if not 0 <= index < size:
        raise LeRobotError(f"action has {size} values; {name} = {index} is outside it")
    return index


def open_source(
    root: Path, camera: str | None = None, steering: str | None = None, throttle: str | None = None
) -> Source:
    """Check the dataset and pick its camera (default: the first) and action axes (by name
    ``steering``/``throttle``, else the first two values, or as given: a name or an index)."""
    info = read_info(root)
    features = info["features"]
    cameras = [k for k, f in features.items() if isinstance(f, dict) and f.get("dtype") in ("video", "image")]
    if camera is None and not cameras:
        raise LeRobotError(f"{root}: no camera (no feature of dtype video or image)")
    camera = camera or cameras[0]
    if camera not in cameras:
        raise LeRobotError(f"{root}: no camera {camera!r}; it has {', '.join(cameras) or 'none'}")
    action = features.get("action")
    if not isinstance(action, dict):
        raise LeRobotError(f"{root}: no action feature")
    s, t = _axis(action, steering, "steer", 0), _axis(action, throttle, "throttle", 1)
    return Source(root, info, camera, s, t)


def _read_tables(directory: Path, columns: list[str] | None = None) -> list[dict[str, list[Any]]]:
    import pyarrow.parquet as pq

    paths = sorted(directory.glob("chunk-*/file-*.parquet"))
    if not paths:
        raise LeRobotError(f"{directory}: no parquet files")
    tables = []
    for path in paths:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises its own errors for a damaged file
            raise LeRobotError(f"{path}: not a readable parquet file: {exc}") from None
        names = [c for c in (columns or table.column_names) if c in table.column_names]
        tables.append(table.select(names).to_pydict())
    return tables


def _episodes(source: Source) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for table in _read_tables(source.root / "meta" / "episodes"):
        keys = [k for k in table if not k.startswith("stats/")]
        rows += [{k: table[k][i] for k in keys} for i in range(len(table[keys[0]]))]
    return sorted(rows, key=lambda r: int(r["episode_index"]))


def _frames_by_episode(source: Source) -> dict[int, list[dict[str, Any]]]:
    columns = ["action", "timestamp", "frame_index", "episode_index", "index"]
    if not source.is_video:
        columns.append(source.camera)
    out: dict[int, list[dict[str, Any]]] = {}
    for table in _read_tables(source.root / "data", columns):
        missing = [c for c in ("action", "frame_index", "episode_index") if c not in table]
        if missing:
            raise LeRobotError(f"{source.root}/data: columns {', '.join(missing)} are missing")
        for i in range(len(table["action"])):
            row = {k: v[i] for k, v in table.items()}
            out.setdefault(int(row["episode_index"]), []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: int(r["frame_index"]))
    return out


def _video_frames(source: Source, episode: dict[str, Any]) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """(frame_index, RGB) of an episode's frames in its video file, decoded with PyAV."""
    av = _need_av()
    key = source.camera
    template = source.info.get("video_path") or VIDEO_PATH
    path = source.root / template.format(
        video_key=key,
        chunk_index=int(episode[f"videos/{key}/chunk_index"]),
        file_index=int(episode[f"videos/{key}/file_index"]),
    )
    start = float(episode.get(f"videos/{key}/from_timestamp") or 0.0)
    length = int(episode["length"])
    try:
        container = av.open(str(path))
    except (FileNotFoundError, av.error.FFmpegError) as exc:
        raise LeRobotError(f"{path}: cannot open the video: {exc}") from None
    with container:
        stream = container.streams.video[0]
        if start > 0:
            container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            index = round((float(frame.time or 0.0) - start) * source.fps)
            if index >= length:
                break
            if index >= 0:
                yield index, frame.to_ndarray(format="rgb24")


def _image_frames(source: Source, rows: list[dict[str, Any]]) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """(frame_index, RGB) of an image-dtype camera stored in the data files (PNG or JPEG bytes)."""
    import cv2

    for row in rows:
        cell = row.get(source.camera)
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not data and isinstance(cell, dict) and cell.get("path"):
            data = (source.root / str(cell["path"])).read_bytes()
        bgr = cv2.imdecode(np.frombuffer(data or b"", np.uint8), cv2.IMREAD_COLOR) if data else None
        if bgr is not None:
            yield int(row["frame_index"]), np.ascontiguousarray(bgr[:, :, ::-1])


def episode_session(root: Path, episode: int) -> str:
    return safe_session_id(f"lerobot-{root.resolve().name}-{episode:06d}")


def import_lerobot(
    source: Source, store: ObjectStore, car: str, on_frame: Callable[[int], None] | None = None
) -> ImportReport:
    """Write each episode of ``source`` into ``store`` as a sealed session of ``car``."""
    report = ImportReport()
    frames = _frames_by_episode(source)
    for episode in _episodes(source):
        index = int(episode["episode_index"])
        rows = {int(r["frame_index"]): r for r in frames.get(index, [])}
        session = episode_session(source.root, index)
        writer = SessionWriter(store, car, session)
        tasks = episode.get("tasks") or []
        images = (
            _video_frames(source, episode) if source.is_video else _image_frames(source, list(rows.values()))
        )
        for frame_index, rgb in images:
            row = rows.pop(frame_index, None)
            action = _import_action(row, source, report) if row else None
            if action is None:
                report.skip(f"episode {index} frame {frame_index}: no action")
                continue
            extra = {"lerobot": {"episode_index": index, "index": row.get("index"), "tasks": tasks}}  # type: ignore[union-attr]
            t_ns = round(float(row.get("timestamp") or frame_index / source.fps) * 1e9)  # type: ignore[union-attr]
            writer.add(frame_index, t_ns, action, encode_jpeg(rgb), extra)
            if on_frame:
                on_frame(1)
        for frame_index in sorted(rows):
            report.skip(f"episode {index} frame {frame_index}: no image in the {source.camera} video")
        if writer.records:
            report.sessions[session] = writer.close()
    return report


def _import_action(
    row: dict[str, Any], source: Source, report: ImportReport
) -> tuple[float, float, str] | None:
    values: Any = row.get("action")
    try:
        vector = [float(v) for v in (values if isinstance(values, list) else [values])]
        steering, throttle = vector[source.steering], vector[source.throttle]
    except (TypeError, ValueError, IndexError):
        return None
    if not (math.isfinite(steering) and math.isfinite(throttle)):
        return None
    if abs(steering) > 1 or abs(throttle) > 1:
        report.clipped += 1
    return max(-1.0, min(1.0, steering)), max(-1.0, min(1.0, throttle)), "manual"
