"""Typed envelopes: frames (frame record + JPEG) and models (manifest + model bytes)."""

from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray
from pydantic import ValidationError

from schemas.base import _summary
from schemas.envelope import (
    DEFAULT_MAX_HEADER,
    DEFAULT_MAX_TOTAL,
    HeaderNotJson,
    HeaderNotObject,
    decode,
    encode,
)
from schemas.errors import ContractError
from schemas.messages import FrameRecord
from schemas.model_card import ModelManifest, sha256_hex
from schemas.signing import is_signed_header, manifest_bytes, sign_manifest


def encode_jpeg(image: NDArray[np.uint8], quality: int = 90) -> bytes:
    """A frame's payload: an RGB (or gray) uint8 image as JPEG, as the car records it."""
    import cv2  # only where images are encoded (car, simulator recording, tests)

    bgr = image[:, :, ::-1] if image.ndim == 3 else image
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} image as JPEG")
    return bytes(buf)


def encode_frame(record: FrameRecord, jpeg: bytes) -> bytes:
    return encode(record.to_dict(), jpeg)


def decode_frame(
    data: bytes | bytearray | memoryview, *, max_total: int = 16 * 1024 * 1024
) -> tuple[FrameRecord, bytes]:
    """Decode a frame envelope; its header is checked strictly, as :func:`frame_header` does."""
    env = decode(data, max_header=DEFAULT_MAX_HEADER, max_total=max_total)
    try:
        return FrameRecord.model_validate(env.header, strict=True), env.payload
    except ValidationError as exc:
        raise ContractError(f"invalid FrameRecord: {_summary(exc)}") from None


def frame_header(header: bytes | bytearray) -> FrameRecord:
    """Parse a frame envelope's header strictly: ``seq`` ``"4"`` or ``5.0`` is refused, not coerced,
    so what the hub acknowledges is exactly what its sealer and trainers read back."""
    try:
        return FrameRecord.model_validate_json(header, strict=True)
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors()}
        if "json_invalid" in kinds:
            raise HeaderNotJson(f"header is not valid JSON: {exc.errors()[0]['msg']}") from None
        if "model_type" in kinds:
            raise HeaderNotObject("header is JSON but not an object") from None
        raise ContractError(f"invalid FrameRecord: {_summary(exc)}") from None


def encode_model(manifest: ModelManifest, model: bytes, key: Ed25519PrivateKey | None = None) -> bytes:
    """Encode a model envelope, signed with ``key`` (a bare manifest header when None: unsigned).
    An empty payload means the manifest's ``url`` carries the bytes."""
    if model and (manifest.size != len(model) or manifest.sha256 != sha256_hex(model)):
        raise ContractError(f"manifest of {manifest.ref} does not match the model bytes")
    return encode(manifest.to_dict() if key is None else sign_manifest(manifest, key), model)


def model_header_manifest(header: dict[str, Any]) -> ModelManifest:
    """The manifest of a model envelope's header, signed or not, WITHOUT verifying the signature."""
    if is_signed_header(header):
        return ModelManifest.from_json(manifest_bytes(header))
    return ModelManifest.from_dict(header)


def decode_model(
    data: bytes | bytearray | memoryview, *, max_total: int = DEFAULT_MAX_TOTAL
) -> tuple[ModelManifest, bytes]:
    """Decode a model envelope and check size and sha256 of inline bytes (not the signature:
    :func:`schemas.signing.verify_header` does that)."""
    env = decode(data, max_header=DEFAULT_MAX_HEADER, max_total=max_total)
    manifest = model_header_manifest(env.header)
    if env.payload:
        if len(env.payload) != manifest.size:
            raise ContractError(
                f"model {manifest.ref}: {len(env.payload)} bytes received, manifest says {manifest.size}"
            )
        if sha256_hex(env.payload) != manifest.sha256:
            raise ContractError(f"model {manifest.ref}: sha256 does not match the manifest")
    elif not manifest.url:
        raise ContractError(f"model {manifest.ref} carries neither bytes nor a url")
    return manifest, env.payload
