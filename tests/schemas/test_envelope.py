"""Envelope codec: round trip, every defect with its own error, and fuzzing."""

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import envelope
from schemas.envelope import (
    BadMagic,
    EnvelopeError,
    EnvelopeTooLarge,
    HeaderNotJson,
    HeaderNotObject,
    HeaderNotUtf8,
    HeaderTooLarge,
    Truncated,
    decode,
    encode,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
headers = st.dictionaries(st.text(max_size=20), json_values, max_size=8)


@given(header=headers, payload=st.binary(max_size=4096))
def test_encode_decode_is_identity(header: dict, payload: bytes) -> None:
    env = decode(encode(header, payload))
    assert env.header == header
    assert env.payload == payload


def test_layout_is_magic_length_header_payload() -> None:
    data = encode({"a": 1}, b"\x00\xff")
    assert data[:4] == b"PDK1"
    (n,) = struct.unpack("<I", data[4:8])
    assert json.loads(data[8 : 8 + n]) == {"a": 1}
    assert data[8 + n :] == b"\x00\xff"


def _raw(header_bytes: bytes, payload: bytes = b"", length: int | None = None) -> bytes:
    n = len(header_bytes) if length is None else length
    return b"PDK1" + struct.pack("<I", n) + header_bytes + payload


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", Truncated),
        (b"PD", Truncated),
        (b"PDK1\x01\x00", Truncated),
        (b"XXXX" + b"\x00" * 8, BadMagic),
        (b"PDK2\x00\x00\x00\x00", BadMagic),
        (_raw(b"{}", length=10), Truncated),
        (_raw(b"", length=0xFFFFFFFF), HeaderTooLarge),
        (_raw(b"\xff\xfe{}"), HeaderNotUtf8),
        (_raw(b"{not json"), HeaderNotJson),
        (_raw(b'{"a": NaN}'), HeaderNotJson),
        (_raw(b"[" * 100_000 + b"]" * 100_000), HeaderTooLarge),
        (_raw(b"[1, 2]"), HeaderNotObject),
        (_raw(b'"text"'), HeaderNotObject),
        (_raw(b"null"), HeaderNotObject),
    ],
)
def test_each_defect_has_its_own_error(data: bytes, error: type[EnvelopeError]) -> None:
    with pytest.raises(error):
        decode(data)


def test_deep_nesting_within_the_limit_is_a_json_error_not_a_crash() -> None:
    deep = b"[" * 30_000 + b"]" * 30_000
    with pytest.raises(HeaderNotJson):
        decode(_raw(deep), max_header=len(deep))


def test_limits_are_configurable() -> None:
    data = encode({"k": "v" * 100}, b"x" * 1000)
    with pytest.raises(HeaderTooLarge):
        decode(data, max_header=50)
    with pytest.raises(EnvelopeTooLarge):
        decode(data, max_total=500)
    assert decode(data, max_header=200, max_total=2000).payload == b"x" * 1000


def test_errors_are_value_errors_with_a_message() -> None:
    with pytest.raises(ValueError, match="header length 10 runs past the end"):
        decode(_raw(b"{}", length=10))


def test_encode_rejects_what_json_cannot_carry() -> None:
    with pytest.raises(EnvelopeError):
        encode({"x": float("nan")})
    with pytest.raises(EnvelopeError):
        encode({"x": object()})
    with pytest.raises(EnvelopeError):
        encode(["not", "a", "dict"])  # type: ignore[arg-type]


@settings(max_examples=500)
@given(data=st.binary(max_size=512))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        decode(data)
    except EnvelopeError:
        pass


@settings(max_examples=500)
@given(
    header=headers,
    payload=st.binary(max_size=256),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 10_000),
)
def test_mutated_envelopes_never_crash(header: dict, payload: bytes, flips: list, cut: int) -> None:
    data = bytearray(encode(header, payload))
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut % 3 == 0:
        del data[cut % (len(data) + 1) :]
    try:
        env = decode(bytes(data))
    except EnvelopeError:
        return
    assert isinstance(env.header, dict)
    assert isinstance(env.payload, bytes)


def test_module_exports_preamble_size() -> None:
    assert envelope.PREAMBLE_SIZE == 8
