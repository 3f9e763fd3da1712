"""A car with a lidar records its scans with its frames: a real Mosquitto, a real hub and the car
daemon on the simulated body (which has a lidar). The broker goes away in the middle of the
recording; every scan recorded reaches the hub's store as a row of the session's ``lidar.csv``
(the layout ``paddock sim capture`` writes), in the frames' seqs, at the frames' poses, and the
trainer's perception reader reads them."""

import csv
import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from firmware.sim.lidar import Lidar
from firmware.sim.tracks import get_track
from hub import HubConfig, HubService
from infra.store import LocalStore
from schemas.dataset import lidar_columns, lidar_key
from schemas.messages import SessionRef
from tests.edge.harness import RecordingDaemon, sim_car_config, until
from tests.hub.conftest import TOKEN, read_session
from trainer.perception.dataset import load_lidar

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAR = "sim-lidar"
SESSION = "lidar-run"


async def test_recorded_scans_reach_the_store_as_the_capture_writes_them(
    tmp_path: Path, mosquitto_factory: Any, make_config: Callable[..., HubConfig]
) -> None:
    broker = mosquitto_factory()
    broker.start()
    hub = HubService(make_config(broker.url))
    loop, prefix = {"start_mode": "autopilot", "autopilot": "expert"}, {"prefix": hub.config.topic_prefix}
    config = sim_car_config(
        tmp_path, broker.url, car=CAR, broker=prefix, loop=loop, publish={"telemetry_hz": 5}
    )
    car = RecordingDaemon(config)
    async with hub, car:
        await until(lambda: car.link.connected.is_set(), 10, "the car online")
        car.start_recording(SESSION)
        await until(lambda: car.recorder.scans >= 40, 20, "scans recorded online")
        broker.stop()  # the rest is spooled on the car while the broker is away
        await until(lambda: not car.link.connected.is_set(), 10, "the car offline")
        offline = car.recorder.scans
        await until(lambda: car.recorder.scans >= offline + 40, 20, "scans recorded offline")
        broker.start()  # same port and persistence
        car.stop_recording()
        await until(lambda: car.recorder.pending == 0, 10, "the recorder drained")
        recorded, written = car.recorder.scans, car.recorder.written
        assert car.status()["lidar_scans"] == recorded
        store = hub.config.data_dir / "store"
        await hub.wait_sealed(CAR, SESSION, timeout=60)

        assert recorded == written and recorded >= 80
        manifest, samples = read_session(store, CAR, SESSION)
        assert manifest["state"] == "sealed" and manifest["frame_count"] == recorded and not manifest["gaps"]
        rows = list(csv.reader(io.StringIO((store / lidar_key(CAR, SESSION)).read_text())))
        header, rows = rows[0], rows[1:]
        beams = len(samples[0].record["lidar"]["ranges"])
        assert header == lidar_columns(beams) and beams == 64
        assert len(rows) == recorded == len(samples)
        assert [int(r[0]) for r in rows] == [s.seq for s in samples]
        for row, sample in zip(rows, samples, strict=True):
            rec = sample.record
            assert [float(v) for v in row[2:5]] == pytest.approx([rec["x"], rec["y"], rec["yaw"]], abs=1e-5)
            assert [float(v) for v in row[5:]] == rec["lidar"]["ranges"]
            assert rec["lidar"]["t_capture_ns"] == rec["t_capture_ns"]  # the scan of the frame's instant

        # Each scan is the one the car's lidar sees from the frame's pose.
        lidar, lidar_spec = Lidar(get_track("oval"), _spec(samples[0].record)), samples[0].record["lidar"]
        for sample in samples[:: len(samples) // 5]:
            rec = sample.record
            expected = lidar.scan(rec["x"], rec["y"], rec["yaw"])
            assert float(np.median(np.abs(expected - np.asarray(rec["lidar"]["ranges"])))) < 0.01
            assert lidar_spec["min_range"] <= min(rec["lidar"]["ranges"]) <= max(rec["lidar"]["ranges"])

        scans = load_lidar(LocalStore(store), SessionRef(car=CAR, session=SESSION))
        assert scans is not None and len(scans) == recorded and scans.ranges.shape == (recorded, beams)
        assert scans.seqs.tolist() == [s.seq for s in samples] and not np.isnan(scans.pose).any()
        assert float(scans.ranges.max()) <= lidar_spec["max_range"]

        # A trim takes the frames' scans with them; a delete takes the lidar files.
        async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
            first = samples[0].seq
            r = await http.post(
                f"/sessions/{CAR}/{SESSION}/trim", json={"start": first, "end": first + 9}, headers=AUTH
            )
            assert r.status_code == 200, r.text
            trimmed = load_lidar(LocalStore(store), SessionRef(car=CAR, session=SESSION))
            assert trimmed is not None and trimmed.seqs.tolist() == [s.seq for s in samples[10:]]
            # The export carries the scans, and its upload rebuilds them from the frames.
            exported = (await http.get(f"/sessions/{CAR}/{SESSION}/export", headers=AUTH)).content
            with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
                member = tar.extractfile(lidar_key(CAR, SESSION))
                assert member is not None and member.read() == (store / lidar_key(CAR, SESSION)).read_bytes()
            assert (await http.delete(f"/sessions/{CAR}/{SESSION}", headers=AUTH)).status_code == 204
            r = await http.post("/sessions", files={"tar": ("s.tar", exported)}, headers=AUTH)
            assert r.status_code == 201, r.text
            uploaded = load_lidar(LocalStore(store), SessionRef(car=CAR, session=SESSION))
            assert uploaded is not None and uploaded.seqs.tolist() == trimmed.seqs.tolist()
            assert np.array_equal(uploaded.ranges, trimmed.ranges)
            assert np.allclose(uploaded.pose, trimmed.pose)
            r = await http.delete(f"/sessions/{CAR}/{SESSION}", headers=AUTH)
            assert r.status_code in (200, 204), r.text
            assert not [p.name for p in (store / lidar_key(CAR, SESSION)).parent.glob("lidar*")]


def _spec(record: dict[str, Any]) -> Any:
    from firmware.sim.lidar import LidarConfig

    scan = record["lidar"]
    return LidarConfig(
        beams=len(scan["ranges"]),
        fov_deg=scan["fov_deg"],
        min_range=scan["min_range"],
        max_range=scan["max_range"],
    )
