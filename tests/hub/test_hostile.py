"""Hostile input against a real hub and broker (docs/security.md, "Hostile input"): each test is one
attack of the LAN and shows its outcome is now as boring as normal operation."""

import asyncio
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hub import HubConfig, HubService
from schemas.envelope import encode
from tests.hub.conftest import TOKEN, eventually
from tests.hub.fakecar import FakeCar, make_jpeg
from tests.missing import missing
from tests.servers.mosquitto import Mosquitto


def _poisoned_headers(car: FakeCar, session: str) -> dict[str, bytes]:
    """Frames whose numbers or types once made every seal of their session fail (or vanish)."""
    good = json.loads(car.frame_bytes(session, 0)[8:].split(b"\xff\xd8", 1)[0])
    variants = {
        "seq 2^63": {"seq": 2**63},
        "speed 1e308": {"seq": 900, "speed": 1e308},
        'seq "4"': {"seq": "4"},
        "seq 5.0": {"seq": 5.0},
        "t_capture_ns 2^70": {"seq": 901, "t_capture_ns": 2**70},
        "extra 2^80": {"seq": 902, "sensor": {"x": [2**80]}},
    }
    return {name: encode(good | change, car.jpeg) for name, change in variants.items()}


async def test_a_poisoned_frame_never_fails_its_session(
    mosquitto: Mosquitto, make_config: Callable[..., HubConfig]
) -> None:
    url = str(mosquitto.url)
    cfg = make_config(url)
    async with HubService(cfg) as hub:
        car = FakeCar(url, "car-p", prefix=cfg.topic_prefix).connect()
        try:
            car.start_recording("s1")
            sent = await asyncio.to_thread(car.record, "s1", 30)
            bad = _poisoned_headers(car, "s1")
            for payload in bad.values():
                car.publish(car.topics.frames(car.car), payload, qos=1)
            sent += await asyncio.to_thread(car.record, "s1", 30)
            car.stop_recording("s1", frames=len(sent))
            sealed = await hub.wait_sealed("car-p", "s1", timeout=30)
        finally:
            car.close()
        assert sealed.frame_count == 60 and sealed.seq_last == 59
        assert hub.catalog.get_session("car-p", "s1") is not None
        stats = hub.ingest_stats()
        c = stats.cars["car-p"]
        assert (c.frames_persisted, c.frames_sealed, c.malformed) == (60, 60, len(bad))
        assert stats.malformed_by_reason == {"frame: invalid frame record": len(bad)}


async def test_the_sealer_process_quarantines_and_reports_what_the_spool_holds(
    mosquitto: Mosquitto, make_config: Callable[..., HubConfig]
) -> None:
    """A spool written by an older, laxer hub: its bad records are kept aside and counted in /ingest."""
    url = str(mosquitto.url)
    cfg = make_config(url, shards={"sealer": "process"})
    async with HubService(cfg) as hub:
        car = FakeCar(url, "car-q", prefix=cfg.topic_prefix)
        for payload in _poisoned_headers(car, "s1").values():
            hub.spool.append(payload, None)
        hub.spool.append(car.frame_bytes("s1", 7), None)
        assert await hub.flush(30)
        await eventually(lambda: hub.ingest_stats().malformed >= 6, what="the sealer's counts")
        stats = hub.ingest_stats()
        assert sum(n for r, n in stats.malformed_by_reason.items() if r.startswith("sealer:")) == 6
        quarantined = list((cfg.data_dir / "store" / "quarantine").iterdir())
        assert len(quarantined) == 6
        row = hub.catalog.get_session("car-q", "s1")
        assert row is not None and row["frame_count"] == 1


def _claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with a start-of-frame header that claims ``width`` x ``height`` pixels."""
    at = jpeg.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), then height and width
    return jpeg[:at] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 4 :]


async def test_a_thumbnail_of_a_decompression_bomb_is_a_clear_4xx(
    mosquitto: Mosquitto, make_config: Callable[..., HubConfig]
) -> None:
    import httpx

    url = str(mosquitto.url)
    cfg = make_config(url)
    async with HubService(cfg) as hub, httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        for i, side in enumerate([30000, 10000]):
            car = FakeCar(url, f"car-b{i}", prefix=cfg.topic_prefix, jpeg=_claiming(make_jpeg(), side, side))
            car.connect()
            try:
                car.start_recording("s1")
                await asyncio.to_thread(car.record, "s1", 3)
                car.stop_recording("s1", frames=3)
                await hub.wait_sealed(car.car, "s1", timeout=20)
            finally:
                car.close()
            r = await http.get(
                f"/sessions/{car.car}/s1/thumbnail", headers={"Authorization": "Bearer " + TOKEN}
            )
            assert r.status_code == 422, r.text
            assert "pixels" in r.json()["detail"], r.json()


async def test_invented_car_ids_cannot_fill_the_hubs_memory(
    mosquitto: Mosquitto, make_config: Callable[..., HubConfig]
) -> None:
    """300 invented cars each send a 20 kB preview: the hub keeps what its 1 MB budget holds."""
    url = str(mosquitto.url)
    cfg = make_config(url, shards={"preview_cache_mb": 1, "preview_ttl_s": 60})
    jpeg = make_jpeg(20_000)
    async with HubService(cfg) as hub:
        car = FakeCar(url, "car-x0", prefix=cfg.topic_prefix, jpeg=jpeg).connect(birth=False)
        try:
            for i in range(300):
                car.car = f"car-x{i}"
                car.frame("none", qos=0)
                car.telemetry()
            previews = lambda: sum(c.preview_frames for c in hub.ingest_stats().cars.values())  # noqa: E731
            await eventually(lambda: previews() >= 290, what="the previews to arrive")
            await eventually(lambda: hub.ingest.preview_of("car-x299") is not None, what="the last preview")
        finally:
            car.close(death=False)
        kept = hub.ingest.latest
        assert kept.bytes <= 1024 * 1024
        assert 20 <= len(kept) < 200
        assert hub.ingest.preview_of("car-x0") is None and hub.ingest.telemetry_of("car-x0") is None
        assert hub.ingest.preview_of("car-x299") is not None


async def test_a_cars_latest_preview_expires(
    mosquitto: Mosquitto, make_config: Callable[..., HubConfig]
) -> None:
    url = str(mosquitto.url)
    cfg = make_config(url, shards={"preview_ttl_s": 1})
    async with HubService(cfg) as hub:
        car = FakeCar(url, "car-y", prefix=cfg.topic_prefix).connect(birth=False)
        try:
            car.frame("none", qos=0)
            await eventually(lambda: hub.ingest.preview_of("car-y") is not None, what="the preview")
            await eventually(lambda: hub.ingest.preview_of("car-y") is None, timeout=5, what="it to expire")
        finally:
            car.close(death=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MB file system (tmpfs), so the disk fills up for real."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        missing(f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_ingest_resumes_by_itself_when_a_full_disk_has_room_again(
    mosquitto: Mosquitto, make_config: Callable[..., HubConfig], small_disk: Path
) -> None:
    url = str(mosquitto.url)
    cfg = make_config(url, spool={"dir": str(small_disk / "spool"), "segment_mb": 0.25})
    filler = small_disk / "filler"
    async with HubService(cfg) as hub:
        free = shutil.disk_usage(small_disk).free
        filler.write_bytes(b"\0" * (free - 200_000))  # room for about 80 of the 300 frames
        car = FakeCar(url, "car-d", prefix=cfg.topic_prefix).connect()
        try:
            car.start_recording("s1")
            sending = asyncio.create_task(asyncio.to_thread(car.record, "s1", 300))
            await eventually(lambda: hub.spool.error is not None, what="the disk to fill up")
            persisted_while_full = hub.ingest_stats().cars["car-d"].frames_persisted
            filler.unlink()
            sent = await sending
            car.stop_recording("s1", frames=len(sent))
            sealed = await hub.wait_sealed("car-d", "s1", timeout=60)
        finally:
            car.close()
        assert persisted_while_full < 300
        assert hub.spool.error is None and hub.spool.stats.write_errors > 0
        assert (sealed.frame_count, sealed.gaps) == (300, [])
        assert hub.ingest_stats().cars["car-d"].frames_persisted == 300


READ_TOKEN, OPERATE_TOKEN = "read-token-0123456789", "operate-token-0123456789"


async def test_scoped_tokens_guard_every_route_on_the_lan(
    mosquitto: Mosquitto, make_config: Callable[..., HubConfig]
) -> None:
    import httpx

    tokens = [{"token": READ_TOKEN, "scope": "read"}, {"token": OPERATE_TOKEN, "scope": "operate"}]
    cfg = make_config(str(mosquitto.url), api={"host": "0.0.0.0", "tokens": tokens})

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async with HubService(cfg) as hub:
        base = f"http://127.0.0.1:{hub.api_url.rsplit(':', 1)[1]}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for path in ["/health", "/ingest", "/sessions", "/models", "/metrics", "/cars"]:
                assert (await http.get(path)).status_code == 401, path
                assert (await http.get(path, headers=auth("wrong-token-0000000"))).status_code == 401
                assert (await http.get(path, headers=auth(READ_TOKEN))).status_code == 200, path
            flush = "/ingest/flush?timeout=5"
            assert (await http.post(flush, headers=auth(READ_TOKEN))).status_code == 403
            assert (await http.post(flush, headers=auth(OPERATE_TOKEN))).status_code == 200
            assert (await http.delete("/datasets/d1", headers=auth(OPERATE_TOKEN))).status_code == 403
            assert (await http.delete("/datasets/d1", headers=auth(TOKEN))).status_code == 404
            grant = "?grant=" + "0" * 32
            assert (await http.get("/models/m/v1/artifact" + grant)).status_code == 401


async def test_on_loopback_reads_are_open_but_the_data_needs_a_token(
    mosquitto: Mosquitto, make_config: Callable[..., HubConfig]
) -> None:
    import httpx

    cfg = make_config(str(mosquitto.url), api={"tokens": [{"token": READ_TOKEN, "scope": "read"}]})
    async with HubService(cfg) as hub, httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        assert (await http.get("/sessions")).status_code == 200
        assert (await http.get("/sessions/car-1/s1/export")).status_code == 401
        assert (await http.get("/models/m/v1/artifact")).status_code == 401
        r = await http.get("/sessions/car-1/s1/export", headers={"Authorization": f"Bearer {READ_TOKEN}"})
        assert r.status_code == 404
