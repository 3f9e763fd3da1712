import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import messages as m
from schemas.errors import ContractError


def test_birth_and_death_round_trip() -> None:
    birth = m.CarStatus(
        state="online",
        bdseq=3,
        mode="manual",
        capabilities=["camera", "sim"],
        camera=m.CameraInfo(width=160, height=120, fps=30),
    )
    again = m.CarStatus.from_json(birth.to_json())
    assert again == birth


@given(
    seq=st.integers(0, m.MAX_FRAME_SEQ - 1),
    steering=st.floats(-1, 1),
    throttle=st.floats(-1, 1),
    mode=st.sampled_from(["manual", "autopilot", "stop"]),
)
def test_frame_record_round_trip_keeps_extras(seq: int, steering: float, throttle: float, mode: str) -> None:
    rec = m.FrameRecord(
        car="c1",
        session="s-1",
        seq=seq,
        t_capture_ns=123,
        steering=steering,
        throttle=throttle,
        mode=mode,
        track_progress=12.5,
    )  # type: ignore[arg-type]
    again = m.FrameRecord.from_json(rec.to_json())
    assert again == rec
    assert again.model_extra == {"track_progress": 12.5}


@pytest.mark.parametrize(
    "payload",
    [
        {"seq": -1, "mode": "manual"},
        {"seq": 0, "mode": "flying"},
        {"seq": 0, "mode": "manual", "steering": 1.5},
        {"seq": 0, "mode": "manual", "session": "../etc"},
        {"seq": 0, "mode": "manual", "progress": 101},
    ],
)
def test_telemetry_rejects_bad_values_with_a_reason(payload: dict) -> None:
    with pytest.raises(ContractError, match="invalid Telemetry"):
        m.Telemetry.from_json(json.dumps(payload))


def test_nan_is_rejected() -> None:
    with pytest.raises(ContractError):
        m.Telemetry.from_dict({"seq": 0, "mode": "manual", "speed": float("nan")})


def test_events_are_parsed_by_type() -> None:
    ev = m.parse_event(
        m.ModelSwappedEvent(name="p", version="1", sha256="0" * 64, load_ms=3, swap_ms=40).to_json()
    )
    assert isinstance(ev, m.ModelSwappedEvent)
    assert isinstance(m.parse_event(b'{"type": "lap", "lap": 1, "lap_time_s": 12.5}'), m.LapEvent)
    with pytest.raises(ContractError, match="invalid event"):
        m.parse_event(b'{"type": "party"}')
    with pytest.raises(ContractError):
        m.parse_event(b"not json")


def test_commands_are_parsed_by_name_and_echo_transactions() -> None:
    cmd = m.parse_command("drive", b'{"steering": -0.5, "throttle": 0.2, "transaction": "t1"}')
    assert isinstance(cmd, m.DriveCommand)
    assert cmd.transaction == "t1"
    assert isinstance(m.parse_command("record", b'{"action": "start"}'), m.RecordCommand)
    with pytest.raises(ContractError):
        m.parse_command("drive", b'{"steering": 3, "throttle": 0}')
    with pytest.raises(ContractError, match="unknown command"):
        m.parse_command("fly", b"{}")


def test_job_requests_are_parsed_by_kind() -> None:
    job = m.TrainJob(job="j-1", params=m.TrainParams(dataset="laps", epochs=3))
    parsed = m.parse_job(job.to_json())
    assert isinstance(parsed, m.TrainJob)
    assert parsed.params.epochs == 3
    ev = m.parse_job(
        b'{"kind": "evaluate", "job": "e1", "params": {"model_name": "p", "model_version": "1",'
        b' "track": "oval"}}'
    )
    assert isinstance(ev, m.EvaluateJob)
    with pytest.raises(ContractError, match="invalid job request"):
        m.parse_job(b'{"kind": "train", "job": "../x", "params": {}}')


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    st_ = m.EStop.from_json(b'{"active": true, "reason": "test", "future_field": 1}')
    assert st_.active and st_.reason == "test"


def test_frame_record_carries_an_optional_teacher_label() -> None:
    rec = m.FrameRecord(car="c1", session="s1", seq=1, t_capture_ns=0, steering=0.4, throttle=0.5,
                        mode="autopilot", label=m.ActionLabel(steering=0.1, throttle=0.5))  # fmt: skip
    again = m.FrameRecord.from_json(rec.to_json())
    assert again.label == m.ActionLabel(steering=0.1, throttle=0.5)
    assert m.FrameRecord.from_json(rec.model_copy(update={"label": None}).to_json()).label is None
    with pytest.raises(ContractError):
        m.FrameRecord.from_dict({**rec.to_dict(), "label": {"steering": 2.0, "throttle": 0.0}})
