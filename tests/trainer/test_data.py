import io
from pathlib import Path

import numpy as np
import pytest

from infra.store import LocalStore, S3Store, StoreError, open_store
from schemas.dataset import session_manifest_key, shard_key
from schemas.messages import SessionRef
from schemas.model_card import preprocess
from schemas.payloads import encode_jpeg
from schemas.shards import Sample, write_shard
from tests.trainer.synth import frame_record, road_image, write_session
from trainer.augment import (
    DRAWS,
    AugmentConfig,
    PixelSpace,
    augment,
    augment_batch,
    augment_sample,
    augment_samples,
    from_pixels,
    to_pixels,
)
from trainer.data import (
    DrivingDataset,
    EpochSampler,
    decode_jpeg,
    list_sessions,
    load_frames,
    split_sessions,
    steering_weights,
)
from trainer.models import ModelOptions


def _refs(n: int, car: str = "car-1") -> list[SessionRef]:
    return [SessionRef(car=car, session=f"sess-{i}") for i in range(n)]


def test_sessions_are_found_and_split_by_session(small_store: LocalStore) -> None:
    refs = list_sessions(small_store)
    assert [(r.car, r.session) for r in refs] == [("car-1", f"sess-{i}") for i in range(3)]
    train, val = split_sessions(refs, 0.3, seed=1)
    assert len(val) == 1 and len(train) == 2
    assert not {(r.car, r.session) for r in train} & {(r.car, r.session) for r in val}
    assert split_sessions(refs, 0.3, seed=1) == (train, val)  # reproducible
    splits = {tuple(r.session for r in split_sessions(refs, 0.3, seed=s)[1]) for s in range(10)}
    assert len(splits) > 1  # the seed chooses
    assert split_sessions(refs[:1], 0.3) == (refs[:1], [])  # one session: nothing to validate on


def test_load_reads_every_frame_in_seq_order(small_store: LocalStore) -> None:
    table = load_frames(small_store, _refs(2))
    assert len(table) == 240
    assert table.report.shards == 6 and table.report.skipped_frames == 0
    assert table.seqs[:120].tolist() == list(range(120))
    assert table.images is not None and table.images[0].shape == (120, 160, 3)
    only_b = table.subset(_refs(2)[1:])
    assert len(only_b) == 120 and only_b.sessions == _refs(2)[1:]
    # Without a pixel cache every sample decodes its JPEG again, with the same result.
    no_cache = load_frames(small_store, _refs(2), cache_pixels_mb=0)
    assert no_cache.images is None
    assert np.array_equal(no_cache.image(7), table.image(7))


def _write_raw_shard(store: LocalStore, car: str, session: str, index: int, samples: list[Sample]) -> None:
    buf = io.BytesIO()
    write_shard(buf, samples)
    store.put(shard_key(car, session, index), buf.getvalue())


def test_corrupt_and_missing_data_is_counted_and_skipped(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for i in range(3):
        write_session(store, "car-1", f"sess-{i}", 100, seed=i, per_shard=25)
    # sess-0: one shard is garbage, not a tar at all
    store.put(shard_key("car-1", "sess-0", 1), b"this is not a tar archive" * 40)
    # sess-1: a shard listed in the manifest is gone; another one is cut in half
    (tmp_path / shard_key("car-1", "sess-1", 2)).unlink()
    whole = store.get(shard_key("car-1", "sess-1", 3))
    store.put(shard_key("car-1", "sess-1", 3), whole[: len(whole) // 2])
    # sess-2: bad frames inside a good shard
    rng = np.random.default_rng(0)
    good = encode_jpeg(road_image(0.1, rng))
    bad = [
        Sample(0, good, frame_record("car-1", "sess-2", 0, 0.1, 0.3)),
        Sample(1, b"\xff\xd8" + b"\x00" * 300, frame_record("car-1", "sess-2", 1, 0.1, 0.3)),  # no image
        Sample(2, good, {**frame_record("car-1", "sess-2", 2, 0.1, 0.3), "steering": 3.0}),
        Sample(
            3, good, {k: v for k, v in frame_record("car-1", "sess-2", 3, 0, 0).items() if k != "throttle"}
        ),
        Sample(4, good, frame_record("car-1", "sess-2", 4, -0.2, 0.3)),
    ]
    _write_raw_shard(store, "car-1", "sess-2", 0, bad)

    table = load_frames(store, _refs(3))
    rep = table.report
    assert rep.corrupt_shards == 1
    assert rep.missing_shards == 1
    assert rep.skipped_frames >= 4  # the truncated shard's tail, the bad JPEG, two bad records
    # sess-0: 3 good shards; sess-1: 2 whole shards + the half that survived; sess-2: 2 + 3 other shards
    sess1 = int((table.session_index == 1).sum())
    assert 50 < sess1 < 75
    assert int((table.session_index == 0).sum()) == 75
    assert int((table.session_index == 2).sum()) == 2 + 75
    assert rep.frames == len(table)
    reasons = "\n".join(rep.reasons)
    assert "shard-000001.tar: not a readable shard" in reasons
    assert "shard-000002.tar: missing" in reasons
    assert "000000001.jpg does not decode" in reasons
    assert "000000002.json has no valid steering/throttle" in reasons
    assert "corrupt frames skipped" in rep.summary()


def test_a_session_without_manifest_is_read_from_its_shards(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    write_session(store, "car-2", "loose", 60, per_shard=20)
    (tmp_path / session_manifest_key("car-2", "loose")).unlink()
    assert list_sessions(store) == [SessionRef(car="car-2", session="loose")]
    assert len(load_frames(store, list_sessions(store))) == 60


def test_s3_store_reads_the_same_frames(s3_server: object, tmp_path: Path) -> None:
    import boto3

    url = s3_server.url  # type: ignore[attr-defined]
    boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket="paddock")
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    s3 = open_store(f"s3://paddock/fleet?endpoint={url}")
    assert isinstance(s3, S3Store)
    local = LocalStore(tmp_path)
    for store in (s3, local):
        write_session(store, "car-1", "sess-0", 40, per_shard=15)
    assert list_sessions(s3) == list_sessions(local)
    a, b = load_frames(s3, _refs(1)), load_frames(local, _refs(1))
    assert len(a) == 40 and a.jpegs == b.jpegs
    assert np.array_equal(a.actions, b.actions)
    with pytest.raises(StoreError):
        s3.get("datasets/car-1/nope/manifest.json")


def test_store_rejects_keys_outside_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for key in ("../x", "a/../../x", "/etc/passwd", ""):
        with pytest.raises(StoreError):
            store.put(key, b"x")
    with pytest.raises(StoreError):
        open_store("ftp://host/x")


def test_samples_are_preprocessed_with_the_cards_function(small_store: LocalStore) -> None:
    table = load_frames(small_store, _refs(1))
    spec = ModelOptions(width=64, height=32).input_spec()
    ds = DrivingDataset(table, spec)
    x, y, w = ds[5]
    expected = preprocess(decode_jpeg(table.jpegs[5]), spec)  # type: ignore[arg-type]
    assert x.shape == (3, 32, 64)
    assert np.array_equal(x.numpy(), expected)
    assert y.tolist() == pytest.approx(table.actions[5].tolist())
    assert float(w) == 1.0
    # The training set augments only keys that carry a seed; the validation set never does.
    aug = DrivingDataset(table, spec, AugmentConfig())
    assert np.array_equal(aug[5][0].numpy(), expected)
    assert not np.array_equal(aug[(5, 123)][0].numpy(), expected) or not np.array_equal(
        aug[(5, 124)][0].numpy(), expected
    )
    # Without room for the preprocessed cache every access preprocesses again, with the same result.
    uncached = DrivingDataset(table, spec, cache_mb=0)
    assert np.array_equal(uncached[5][0].numpy(), expected)


def test_flip_mirrors_the_image_and_negates_the_steering() -> None:
    image = _planar(road_image(0.6, np.random.default_rng(1)))
    only_flip = AugmentConfig(colour_p=0, blur_p=0, shadow_p=0, shift_p=0, flip_p=1.0)
    out, steering = augment(image, 0.6, np.random.default_rng(0), only_flip)
    assert steering == pytest.approx(-0.6)
    assert np.array_equal(out, image[:, :, ::-1])


def test_augmentation_is_deterministic_per_seed_and_keeps_the_image_shape() -> None:
    image = _planar(road_image(0.2, np.random.default_rng(2)))
    config = AugmentConfig(colour_p=1, blur_p=1, shadow_p=1, shift_p=1, flip_p=0.5, shift_steering=1.0)
    a = augment(image, 0.2, np.random.default_rng(7), config)
    b = augment(image, 0.2, np.random.default_rng(7), config)
    c = augment(image, 0.2, np.random.default_rng(8), config)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == image.shape and a[0].dtype == np.float32
    assert a[0].min() >= 0 and a[0].max() <= 255  # still valid pixel values
    assert -1.0 <= a[1] <= 1.0
    assert AugmentConfig.none().enabled is False


def test_a_shift_right_moves_the_content_and_can_hint_a_recovery() -> None:
    image = np.zeros((3, 10, 20), dtype=np.float32)
    image[:, :, 5] = 255  # a vertical white line at x = 5
    config = AugmentConfig(
        colour_p=0, blur_p=0, shadow_p=0, flip_p=0, shift_p=1, shift=0.15, shift_steering=0.5
    )
    draws = np.zeros(DRAWS)
    draws[12] = 0.99  # the largest shift right: 3 px of 20
    draws[13] = 0.5  # no vertical shift
    out, steering = augment(image, 0.0, draws, config)
    assert np.flatnonzero(out[0, 5, :]).tolist() == [8]
    assert steering == pytest.approx(0.5 * 3 / 20)


def test_augmenting_in_model_space_round_trips_the_cards_normalisation() -> None:
    spec = ModelOptions(width=64, height=32).input_spec()
    x = preprocess(road_image(0.3, np.random.default_rng(3)), spec)
    pixels = to_pixels(x, spec)
    assert pixels.shape == (3, 32, 64) and pixels.min() >= 0 and pixels.max() <= 255
    np.testing.assert_allclose(from_pixels(pixels, spec), x, atol=1e-5)
    # Brightness in model space is brightness on the image: a +20 % change is +20 % of each pixel's mean.
    y, _ = augment_sample(x, 0.0, _only_brightness(0.2), AugmentConfig(colour_p=1, contrast=0, brightness=0.2,
                          blur_p=0, shadow_p=0, flip_p=0, shift_p=0), PixelSpace(spec))  # fmt: skip
    brighter = to_pixels(y, spec)
    assert brighter.mean() == pytest.approx(1.2 * pixels.mean(), rel=0.02)  # (few pixels saturate)


def _planar(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.astype(np.float32).transpose(2, 0, 1))


def _only_brightness(amount: float) -> np.ndarray:
    draws = np.ones(DRAWS)
    draws[0] = 0.0  # colour on
    draws[1] = 1.0  # brightness +max
    draws[2] = 0.5  # contrast 0
    return draws


def test_rare_steering_weighs_more() -> None:
    steering = np.array([0.0] * 90 + [0.9] * 10, dtype=np.float32)
    w = steering_weights(steering)
    assert w.mean() == pytest.approx(1.0)
    assert w[-1] == pytest.approx(9 * w[0])
    capped = steering_weights(steering, max_weight=3)
    assert capped[-1] == pytest.approx(3 * capped[0])


def test_epoch_sampler_splits_one_order_over_ranks() -> None:
    def draws(rank: int, world: int, epoch: int = 0, **kw: object) -> list[tuple[int, tuple[float, ...]]]:
        s = EpochSampler(10, seed=3, rank=rank, world=world, **kw)  # type: ignore[arg-type]
        s.set_epoch(epoch)
        return [(i, tuple(u)) for i, u in s]

    single = draws(0, 1)
    assert sorted(i for i, _ in single) == list(range(10))
    r0, r1, r2 = draws(0, 3), draws(1, 3), draws(2, 3)
    assert len(r0) == len(r1) == len(r2) == 4  # padded: every rank takes the same number of steps
    assert {i for i, _ in r0 + r1 + r2} == set(range(10))
    assert draws(0, 1) == single and draws(0, 1, epoch=1) != single
    assert all(len(u) == DRAWS and min(u) >= 0 and max(u) < 1 for _, u in single)
    unpadded = [draws(r, 3, pad=False, shuffle=False) for r in range(3)]
    assert sorted(i for d in unpadded for i, _ in d) == list(range(10))
    weighted = EpochSampler(100, weights=np.array([1.0] * 99 + [1000.0], dtype=np.float32))
    assert sum(i == 99 for i, _ in weighted) > 50


def test_augmenting_normalised_samples_equals_augmenting_pixels() -> None:
    spec = ModelOptions(width=64, height=32).input_spec()
    space = PixelSpace(spec)
    assert space.uniform  # one mean and std for all channels: augment the normalised batch itself
    rng = np.random.default_rng(4)
    x = np.stack([preprocess(road_image(s, rng), spec) for s in (-0.5, 0.0, 0.3, 0.8)])
    draws = rng.random((4, DRAWS))
    draws[:, [0, 3, 9, 11]] = 0.0  # every sample gets colour, shadow, blur and a shift
    config = AugmentConfig()
    steering = np.array([-0.5, 0.0, 0.3, 0.8], dtype=np.float32)
    fast, fast_steering = augment_samples(x.copy(), steering, draws, config, space)
    pixels, slow_steering = augment_batch(space.to_pixels(x), steering, draws, config)
    np.testing.assert_allclose(fast, space.from_pixels(pixels), atol=1e-4)
    np.testing.assert_array_equal(fast_steering, slow_steering)
    assert not np.allclose(fast, x)


def test_a_teacher_label_is_learned_instead_of_the_applied_action(tmp_path: Path) -> None:
    """Frames recorded with noise injection carry the expert's action as `label`; that is the target."""
    store = LocalStore(tmp_path)
    rng = np.random.default_rng(0)
    samples = []
    for seq in range(6):
        record = frame_record("car-1", "dart", seq, steering=0.5, throttle=0.4)
        if seq % 2 == 0:
            record["label"] = {"steering": -0.25, "throttle": 0.3}
        samples.append(Sample(seq=seq, jpeg=encode_jpeg(road_image(0.0, rng)), record=record))
    _write_raw_shard(store, "car-1", "dart", 0, samples)
    table = load_frames(store, [SessionRef(car="car-1", session="dart")])
    assert np.allclose(table.actions, [[-0.25, 0.3], [0.5, 0.4]] * 3)
