"""The car's rules for model envelopes, one refusal at a time (the attacks over a real broker, with
a real hub and car daemon, are in test_signed_deployments.py)."""

import time
from pathlib import Path

import pytest

from edge.trust import SequenceStore, TrustError, TrustPolicy
from schemas.envelope import decode
from schemas.signing import KeyRing, generate_private_key
from tests.edge.modelkit import onnx_model, signed_envelope

KEY = generate_private_key()
MODEL = onnx_model()


def header(**kw: object) -> dict[str, object]:
    return decode(signed_envelope(MODEL, KEY, **kw)).header  # type: ignore[arg-type]


def policy(tmp_path: Path, keys: list[object] | None = None, clock: float | None = None) -> TrustPolicy:
    return TrustPolicy(
        KeyRing(keys if keys is not None else [KEY.public_key()]),  # type: ignore[arg-type]
        "car-1",
        "fleet",
        sequences=SequenceStore(tmp_path / "seq.json"),
        clock=(lambda: clock) if clock is not None else time.time,
    )


def refused(p: TrustPolicy, h: dict[str, object], source: str = "car") -> TrustError:
    with pytest.raises(TrustError) as info:
        p.verify(h, source)  # type: ignore[arg-type]
    return info.value


def test_replays_are_refused_across_restarts(tmp_path: Path) -> None:
    p = policy(tmp_path)
    old, new = header(sequence=5), header(sequence=6)
    p.accept(p.verify(old, "car"))
    p.accept(p.verify(new, "car"))
    e = refused(p, old)
    assert e.code == "replayed" and "sequence 5 for car car-1, not above the last accepted 6" in e.reason
    assert p.verify(new, "car").manifest.sequence == 6  # the current envelope again is no replay
    assert refused(p, header(sequence=6)).code == "replayed"  # another envelope with a used sequence
    restarted = policy(tmp_path)
    assert refused(restarted, old).code == "replayed"
    # sequences are per target: the group's own count is separate
    restarted.accept(restarted.verify(header(group="fleet", sequence=1), "group"))


def test_foreign_expired_unbound_and_unknown_key_envelopes(tmp_path: Path) -> None:
    p = policy(tmp_path)
    e = refused(p, header(car="car-2"))
    assert e.code == "wrong_target" and "signed for car car-2, not for this car's car car-1" in e.reason
    assert refused(p, header(group="fleet")).code == "wrong_target"  # a group's on the car's topic
    assert refused(p, header(group="other"), "group").code == "wrong_target"
    e = refused(p, header(ttl_s=-3600))
    assert e.code == "expired" and "expired at" in e.reason
    assert policy(tmp_path, clock=time.time() + 7200).verify(header(ttl_s=7000), "car")  # within skew
    e = refused(policy(tmp_path, keys=[generate_private_key().public_key()]), header())
    assert e.code == "unknown_key" and "unknown key" in e.reason
    e = refused(p, decode(signed_envelope(MODEL, None)).header)  # type: ignore[arg-type]
    assert e.code == "unsigned"


def test_rotation_trusts_two_keys(tmp_path: Path) -> None:
    new = generate_private_key()
    p = policy(tmp_path, keys=[KEY.public_key(), new.public_key()])
    p.accept(p.verify(header(sequence=1), "car"))
    h = decode(signed_envelope(MODEL, new, sequence=2)).header
    assert p.verify(h, "car").manifest.sequence == 2  # type: ignore[arg-type]
