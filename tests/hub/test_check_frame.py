"""The network thread's frame check accepts exactly what schemas.payloads.decode_frame accepts
(and then also wants the topic's car and a JPEG)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.receiver import check_frame
from schemas.envelope import encode
from schemas.errors import ContractError
from schemas.messages import FrameRecord
from schemas.payloads import decode_frame, encode_frame

JPEG = b"\xff\xd8" + b"\x00" * 50
GOOD = encode_frame(
    FrameRecord(car="c1", session="s", seq=3, t_capture_ns=9, steering=0.5, throttle=-0.25, mode="manual"),
    JPEG,
)


def _reference(payload: bytes, car: str) -> bool:
    try:
        record, jpeg = decode_frame(payload, max_total=1 << 20)
    except ContractError:
        return False
    return record.car == car and jpeg.startswith(b"\xff\xd8")


def _fast(payload: bytes, car: str) -> bool:
    try:
        check_frame(payload, car, 1 << 20)
    except ContractError:
        return False
    return True


headers = st.dictionaries(
    st.sampled_from(
        ["car", "session", "seq", "t_capture_ns", "steering", "throttle", "mode", "speed", "x", "preview"]
    ),
    st.one_of(
        st.sampled_from(["c1", "c2", "s", "../s", "manual", "autopilot", ""]),
        st.integers(-5, 2**65),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    ),
)


BASE = {
    "car": "c1",
    "session": "s",
    "seq": 1,
    "t_capture_ns": 2,
    "steering": 0.1,
    "throttle": 0.2,
    "mode": "manual",
}


@settings(max_examples=400, deadline=None)
@given(headers, st.booleans())
def test_same_verdict_on_headers(header: dict[str, object], on_valid_base: bool) -> None:
    if on_valid_base:  # mostly-valid records, one or two fields changed
        header = {**BASE, **dict(list(header.items())[:2])}
    payload = encode(header, JPEG)
    assert _fast(payload, "c1") == _reference(payload, "c1"), header


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(GOOD)), st.integers(0, 255), st.integers(0, len(GOOD) - 1))
def test_same_verdict_on_damaged_bytes(cut: int, byte: int, at: int) -> None:
    damaged = bytearray(GOOD)
    damaged[at] = byte
    for payload in (GOOD[:cut], bytes(damaged)):
        assert _fast(payload, "c1") == _reference(payload, "c1")


def test_non_finite_numbers_and_non_objects() -> None:
    for text in (b'{"car":"c1","x":NaN}', b'{"car":"c1","x":[Infinity]}', b"[1,2]", b'"c1"', b"\xff\xfe"):
        payload = b"PDK1" + len(text).to_bytes(4, "little") + text + JPEG
        assert not _fast(payload, "c1") and not _reference(payload, "c1")
    base = GOOD.replace(b'"mode":"manual"', b'"mode":"manual","model":"NaN-pilot"')
    payload = b"PDK1" + (len(base) - 8 - len(JPEG)).to_bytes(4, "little") + base[8:]
    assert _fast(payload, "c1") and _reference(payload, "c1")  # "NaN" inside a string is fine
    assert not _fast(GOOD, "c2")  # the topic's car must match
