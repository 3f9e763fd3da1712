"""Sessions uploaded to a running hub (``POST /sessions``): the export's tar goes back in as a
sealed session, listed and editable like a recorded one, and a hostile tar leaves nothing behind."""

import io
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from hub import HubConfig, HubService
from tests.hub.conftest import TOKEN
from tests.hub.test_api import record

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def hub(mosquitto, make_config: Callable[..., HubConfig]) -> AsyncIterator[HubService]:  # type: ignore[no-untyped-def]
    async with HubService(make_config(mosquitto.url)) as h:
        yield h


def _retar(data: bytes, old: str, new: str, shard_name: str | None = None) -> bytes:
    """The same tar with ``old`` replaced by ``new`` in its member names and in its manifest (the
    shards' frames keep saying what they are)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            content = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name.endswith("manifest.json"):
                content = content.replace(f'"{old}"'.encode(), f'"{new}"'.encode())
            member.name, member.size = member.name.replace(f"/{old}/", f"/{new}/"), len(content)
            if shard_name and not member.name.endswith("manifest.json"):
                member.name = member.name.rsplit("/", 1)[0] + "/" + shard_name
            dst.addfile(member, io.BytesIO(content))
    return out.getvalue()


def _files(store: Path, car: str, session: str) -> list[str]:
    folder = store / "datasets" / car / session
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_an_exported_session_uploads_back_and_a_bad_tar_leaves_nothing(hub: HubService) -> None:
    (await record(hub, "car-u", "run-a", 60)).close()
    store = Path(hub.config.store_url)
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        tar = (await http.get("/sessions/car-u/run-a/export", headers=AUTH)).content
        assert (await http.delete("/sessions/car-u/run-a", headers=AUTH)).status_code == 204
        assert (await http.get("/sessions", params={"car": "car-u"})).json()["total"] == 0

        files = {"tar": ("run-a.tar", tar, "application/x-tar")}
        assert (await http.post("/sessions", files=files)).status_code == 401
        r = await http.post("/sessions", files=files, headers=AUTH)
        assert r.status_code == 201, r.text
        assert r.json()["frame_count"] == 60 and r.json()["state"] == "sealed"
        listed = (await http.get("/sessions", params={"car": "car-u"})).json()
        assert listed["total"] == 1 and listed["sessions"][0]["stats"]["steering_mean"] is not None
        r = await http.post("/sessions/car-u/run-a/trim", json={"start": 0, "end": 9}, headers=AUTH)
        assert r.status_code == 200 and r.json()["frame_count"] == 50  # edited like a recorded one
        r = await http.post("/sessions", files=files, headers=AUTH)
        assert r.status_code == 409 and "exists" in r.text

        # Frames of run-a filed under run-b: refused, and no shard of run-b stays in the store.
        moved = _retar(tar, "run-a", "run-b")
        r = await http.post("/sessions", files={"tar": ("b.tar", moved)}, headers=AUTH)
        assert r.status_code == 422 and "belongs to car-u/run-a" in r.text
        assert _files(store, "car-u", "run-b") == []
        # A member outside the session's folder, and bytes that are no tar at all.
        escape = _retar(tar, "run-a", "run-c", shard_name="../../../a.tar")
        r = await http.post("/sessions", files={"tar": ("c.tar", escape)}, headers=AUTH)
        assert r.status_code == 422 and "not a shard of car-u/run-c" in r.text
        assert _files(store, "car-u", "run-c") == [] and not (store / "a.tar").exists()
        r = await http.post("/sessions", files={"tar": ("d.tar", b"not a tar")}, headers=AUTH)
        assert r.status_code == 422
        assert (await http.get("/sessions", params={"car": "car-u"})).json()["total"] == 1


def _with_lidar(data: bytes, session: str, rows: list[str]) -> bytes:
    """The tar with a captured session's ``lidar.csv`` (two beams) added at its end."""
    out = io.BytesIO()
    text = "\n".join(["seq,t_s,x,y,yaw,r000,r001", *rows, ""]).encode()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo(f"datasets/car-l/{session}/lidar.csv")
        info.size = len(text)
        dst.addfile(info, io.BytesIO(text))
    return out.getvalue()


async def _upload(http: httpx.AsyncClient, tar: bytes) -> httpx.Response:
    return await http.post("/sessions", files={"tar": ("s.tar", tar)}, headers=AUTH)


async def test_a_captured_sessions_lidar_csv_is_checked_and_kept(hub: HubService) -> None:
    (await record(hub, "car-l", "run-l", 12)).close()
    store = Path(hub.config.store_url)
    async with httpx.AsyncClient(base_url=hub.api_url, timeout=30) as http:
        tar = (await http.get("/sessions/car-l/run-l/export", headers=AUTH)).content
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            assert not any(n.endswith("lidar.csv") for n in t.getnames())  # its frames carry no scans
        assert (await http.delete("/sessions/car-l/run-l", headers=AUTH)).status_code == 204
        for bad, reason in (
            ([f"{s},0.1,1,2,0.5,1.5,2.5" for s in (0, 1, 99)], "line 4: seq 99 is not the session's next"),
            (["0,0.1,1,2,0.5,1.5", "1,0.2,1,2,0.5,1.5,2.5"], "line 2: not a scan of 2 ranges"),
            (["0,0.1,,,,1.5,nan"], "line 2: not a scan of 2 ranges"),
        ):
            r = await _upload(http, _with_lidar(tar, "run-l", bad))
            assert r.status_code == 422 and reason in r.text, r.text
            assert _files(store, "car-l", "run-l") == []  # nothing of a refused upload stays
        good = ["0,0.1,1.0,2.0,0.5,1.5,2.5", "4,0.3,,,,1.25,2.0"]  # a real car has no pose: empty
        r = await _upload(http, _with_lidar(tar, "run-l", good))
        assert r.status_code == 201, r.text
        kept = (store / "datasets" / "car-l" / "run-l" / "lidar.csv").read_text().splitlines()
        assert kept == ["seq,t_s,x,y,yaw,r000,r001", *good]
        again = (await http.get("/sessions/car-l/run-l/export", headers=AUTH)).content
        with tarfile.open(fileobj=io.BytesIO(again)) as t:
            member = t.extractfile("datasets/car-l/run-l/lidar.csv")
            assert member is not None and member.read().decode().splitlines() == kept
