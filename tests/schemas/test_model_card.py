import base64
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.keys import load_or_create_private_key
from schemas.envelope import decode
from schemas.errors import ContractError
from schemas.messages import FrameRecord
from schemas.model_card import (
    Crop,
    InputSpec,
    ModelCard,
    ModelManifest,
    Normalisation,
    OutputSpec,
    decode_outputs,
    preprocess,
    sha256_hex,
)
from schemas.payloads import decode_frame, decode_model, encode_frame, encode_model
from schemas.signing import (
    KeyRing,
    SignatureError,
    UnknownKey,
    key_id,
    load_public_key,
    load_public_keys,
    public_key_pem,
    sign_manifest,
    verify_header,
)


def card(colour: str = "rgb") -> ModelCard:
    return ModelCard(
        architecture="linear",
        input=InputSpec(width=80, height=60, colour=colour, crop=Crop(top=40)),  # type: ignore[arg-type]
        outputs=[OutputSpec(name="steering"), OutputSpec(name="throttle", range=(0.0, 1.0))],
    )


def manifest(model: bytes) -> ModelManifest:
    return ModelManifest(
        name="pilot", version="1", sha256=sha256_hex(model), size=len(model), format="onnx", card=card()
    )


def test_preprocess_crops_resizes_normalises_and_transposes() -> None:
    img = np.zeros((120, 160, 3), np.uint8)
    img[40:, :, 0] = 255  # red below the crop line
    x = preprocess(img, card().input)
    assert x.shape == (3, 60, 80) and x.dtype == np.float32
    assert np.allclose(x[0], 1.0) and np.allclose(x[1:], 0.0)


def test_preprocess_gray_and_nhwc() -> None:
    spec = InputSpec(
        width=32, height=24, colour="gray", layout="nhwc", normalisation=Normalisation(mean=[0.5], std=[0.5])
    )
    x = preprocess(np.full((48, 64, 3), 255, np.uint8), spec)
    assert x.shape == (24, 32, 1)
    assert np.allclose(x, 1.0)


def test_preprocess_rejects_bad_images() -> None:
    with pytest.raises(ContractError):
        preprocess(np.zeros((120, 160, 3), np.float32), card().input)  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="leaves nothing"):
        preprocess(np.zeros((30, 160, 3), np.uint8), card().input)


def test_card_validation() -> None:
    with pytest.raises(ValueError, match="bins"):
        OutputSpec(name="steering", kind="categorical", bins=[0.0])
    with pytest.raises(ValueError, match="duplicate"):
        ModelCard(
            architecture="x",
            input=InputSpec(width=1, height=1),
            outputs=[OutputSpec(name="steering"), OutputSpec(name="steering")],
        )
    with pytest.raises(ValueError, match="channels"):
        ModelCard(
            architecture="x",
            input=InputSpec(width=1, height=1, normalisation=Normalisation(mean=[0, 0], std=[1, 1])),
            outputs=[OutputSpec(name="steering")],
        )


def test_decode_outputs_linear_and_categorical() -> None:
    c = ModelCard(
        architecture="cat",
        input=InputSpec(width=8, height=8),
        outputs=[
            OutputSpec(name="steering", kind="categorical", bins=[-1, 0, 1]),
            OutputSpec(name="throttle", range=(0, 1)),
        ],
    )
    out = decode_outputs(c, {"steering": np.array([[0.1, 0.2, 3.0]]), "throttle": np.array([[1.7]])})
    assert out == {"steering": 1.0, "throttle": 1.0}
    with pytest.raises(ContractError, match="not finite"):
        decode_outputs(c, {"steering": np.array([np.nan, 0, 0]), "throttle": np.array([0.5])})
    with pytest.raises(ContractError, match="expected 3"):
        decode_outputs(c, {"steering": np.array([0, 0]), "throttle": np.array([0.5])})
    with pytest.raises(ContractError, match="no output tensor"):
        decode_outputs(c, {"steering": np.array([0, 0, 1])})


@settings(max_examples=50)
@given(model=st.binary(min_size=1, max_size=2048))
def test_model_envelope_round_trip(model: bytes) -> None:
    man, payload = decode_model(encode_model(manifest(model), model))
    assert payload == model and man == manifest(model).model_copy(update={"created": man.created})


def test_model_envelope_detects_tampering() -> None:
    model = b"\x01" * 100
    data = bytearray(encode_model(manifest(model), model))
    data[-1] ^= 0xFF
    with pytest.raises(ContractError, match="sha256"):
        decode_model(bytes(data))
    with pytest.raises(ContractError, match="bytes received"):
        decode_model(bytes(data[:-1]))


def test_frame_envelope_round_trip() -> None:
    rec = FrameRecord(
        car="c1", session="s1", seq=5, t_capture_ns=1, steering=0.1, throttle=0.3, mode="manual"
    )
    got, jpeg = decode_frame(encode_frame(rec, b"\xff\xd8jpeg"))
    assert got == rec and jpeg == b"\xff\xd8jpeg"


def test_signatures(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = load_or_create_private_key(tmp_path / "hub.key")
    assert (tmp_path / "hub.key").stat().st_mode & 0o777 == 0o600
    again = load_or_create_private_key(tmp_path / "hub.key")
    assert public_key_pem(again.public_key()) == public_key_pem(key.public_key())
    ring = KeyRing([load_public_key(public_key_pem(key.public_key()))])
    header = sign_manifest(manifest(b"abc"), key)
    man, body = verify_header(header, ring)
    assert man.key_id == key_id(key.public_key()) and base64.b64decode(header["manifest"]) == body
    with pytest.raises(SignatureError, match="malformed"):
        verify_header(manifest(b"abc").to_dict(), ring)
    with pytest.raises(UnknownKey, match=f"unknown key {header['key_id']}"):
        verify_header(header, KeyRing([Ed25519PrivateKey.generate().public_key()]))
    # any change to the bytes that travelled breaks the signature, a re-serialisation included
    altered = json.loads(body) | {"version": "2"}
    forged = header | {"manifest": base64.b64encode(json.dumps(altered).encode()).decode()}
    with pytest.raises(SignatureError, match="does not verify"):
        verify_header(forged, ring)
    reordered = json.dumps(json.loads(body), sort_keys=True, indent=1).encode()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_header(header | {"manifest": base64.b64encode(reordered).decode()}, ring)
    # a signature survives the trip through an envelope
    data = encode_model(manifest(b"abc"), b"abc", key)
    assert decode_model(data)[0].key_id == key_id(key.public_key())
    assert verify_header(decode(data).header, ring)[0].sha256 == sha256_hex(b"abc")


def test_a_newer_hubs_extra_fields_are_signed_and_ignored() -> None:
    key = Ed25519PrivateKey.generate()
    body = json.loads(manifest(b"abc").model_copy(update={"key_id": key_id(key.public_key())}).to_json())
    body |= {"priority": 7, "canary": {"percent": 10}}  # fields this version has never heard of
    raw = json.dumps(body).encode()
    header = {"manifest": base64.b64encode(raw).decode(), "key_id": key_id(key.public_key()),
              "signature": base64.b64encode(key.sign(raw)).decode(), "hub": "2.0"}  # fmt: skip
    man, signed = verify_header(header, KeyRing([key.public_key()]))
    assert signed == raw and man.ref == "pilot:1" and "priority" not in man.to_dict()


def test_a_key_ring_trusts_old_and_new_keys_while_rotating(tmp_path) -> None:  # type: ignore[no-untyped-def]
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    bundle = tmp_path / "hub.pub"
    bundle.write_bytes(public_key_pem(old.public_key()) + public_key_pem(new.public_key()))
    ring = KeyRing(load_public_keys(bundle))
    assert ring.ids == sorted([key_id(old.public_key()), key_id(new.public_key())])
    for key in (old, new):
        assert verify_header(sign_manifest(manifest(b"abc"), key), ring)[0].key_id == key_id(key.public_key())
    with pytest.raises(ContractError, match="no BEGIN PUBLIC KEY"):
        load_public_keys(b"garbage")


def test_frame_stack_keeps_the_last_frames_oldest_first_on_the_channel_axis() -> None:
    from schemas.model_card import FrameStack, InputSpec

    for layout, axis in (("nchw", 0), ("nhwc", 2)):
        spec = InputSpec(width=4, height=3, colour="gray", layout=layout, frames=3)  # type: ignore[arg-type]
        assert spec.shape == ((3, 3, 4) if layout == "nchw" else (3, 4, 3))
        stack = FrameStack(spec)
        one = [np.full((1, 3, 4) if layout == "nchw" else (3, 4, 1), k, np.float32) for k in range(4)]
        first = stack.push(one[0])
        assert first.shape == spec.shape and np.all(first == 0)  # the first frame fills the stack
        stack.push(one[1])
        stack.push(one[2])
        last = stack.push(one[3])
        assert [float(np.take(last, i, axis=axis).mean()) for i in range(3)] == [1.0, 2.0, 3.0]
    plain = InputSpec(width=4, height=3, colour="gray")
    assert plain.frames is None and plain.shape == (1, 3, 4) and "frames" not in plain.to_dict()
