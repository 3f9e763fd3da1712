"""Model hot-swap: verify, cache, load, warm up, smoke-test, swap between ticks (docs/car.md,
"Model hot-swap"; the envelope and its signature: docs/wire.md).

Models arrive as retained envelopes on the car's own topic and on its group's; the car's own
assignment wins while it exists. For each new assignment, off the control loop:

1. check the envelope's signature over the exact manifest bytes with a trusted key, its target,
   sequence and expiry (:mod:`edge.trust`; unsigned models only with the development setting
   ``models.allow_unsigned``), the size limit, the byte count and the sha256 — or download the
   bytes from the manifest's ``url`` and check those;
2. write model and manifest to the cache atomically (temp file, fsync, rename);
3. load it in the runtime for its format, warm it up on the latest camera frame and smoke-test it:
   every output present, of the right size, finite and near its declared range; median latency
   within the tick budget;
4. hand it to the control loop, which swaps it in at the start of the next tick, then mark it the
   last good model, publish ``model/state`` and a ``model_swapped`` event (with the time from
   message arrival to that first tick).

Any failure publishes ``model_rejected`` with the reason and leaves the old model driving. At
boot the last good model is loaded from the cache, so the car drives without a broker.
"""

import asyncio
import hashlib
import json
import logging
import statistics
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from numpy.typing import NDArray

from edge.config import CarConfig, ConfigError, ModelsSection
from edge.loop import ControlLoop
from edge.pilots import ModelPilot
from edge.runtimes import LoadedModel, ModelLoadError, RuntimeUnavailable, runtime_for
from edge.trust import Source, Trusted, TrustError, TrustPolicy
from infra.files import write_atomic
from infra.tls import client_context
from schemas.envelope import EnvelopeError, EnvelopeTooLarge, decode
from schemas.errors import ContractError
from schemas.messages import ModelState
from schemas.model_card import FrameStack, ModelKind, ModelManifest, decode_outputs, preprocess, sha256_hex
from schemas.payloads import model_header_manifest
from schemas.signing import KeyRing, load_public_keys

log = logging.getLogger(__name__)

PILOT_SLOT = "model"


class ModelRejected(Exception):
    """A model that must not drive; the message is the reason published in ``model_rejected``."""

    def __init__(self, reason: str, manifest: ModelManifest | None = None, code: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.manifest = manifest
        self.code = code


# --- the cache ------------------------------------------------------------------------------------
class ModelCache:
    """Verified models on disk: ``{sha256}.{format}`` + ``{sha256}.json`` (the envelope's header as
    it arrived, signature included, so a boot verifies it again), and ``active`` naming the last
    model that drove."""

    def __init__(self, directory: Path, keep: int = 3) -> None:
        self.directory = directory
        self.keep = keep
        directory.mkdir(parents=True, exist_ok=True)

    def _paths(self, manifest: ModelManifest) -> tuple[Path, Path]:
        return (
            self.directory / f"{manifest.sha256}.{manifest.format}",
            self.directory / f"{manifest.sha256}.json",
        )

    def store(self, manifest: ModelManifest, data: bytes, header: dict[str, Any]) -> Path:
        model_path, manifest_path = self._paths(manifest)
        if not (model_path.exists() and model_path.stat().st_size == len(data)):
            write_atomic(model_path, data)
        write_atomic(manifest_path, json.dumps(header, separators=(",", ":")).encode())
        return model_path

    def load(self, sha256: str) -> tuple[dict[str, Any], bytes]:
        """A cached model's header (not yet verified) and bytes, checked against its sha256."""
        header = json.loads((self.directory / f"{sha256}.json").read_bytes())
        if not isinstance(header, dict):
            raise ContractError(f"cached header of {sha256[:12]} is not a JSON object")
        manifest = model_header_manifest(header)
        data = self._paths(manifest)[0].read_bytes()
        if sha256_hex(data) != manifest.sha256 or manifest.sha256 != sha256:
            raise ModelRejected(f"cached model {manifest.ref} is corrupt (sha256 mismatch)", manifest)
        return header, data

    def set_active(self, sha256: str) -> None:
        write_atomic(self.directory / "active", sha256.encode())

    def active(self) -> str | None:
        try:
            value = (self.directory / "active").read_text().strip()
        except FileNotFoundError:
            return None
        return value or None

    def candidates(self) -> list[str]:
        """Cached models, the active one first, then newest first."""
        manifests = sorted(self.directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        shas = [p.stem for p in manifests]
        active = self.active()
        if active in shas:
            shas.remove(active)
            shas.insert(0, active)
        return shas

    def prune(self, protect: set[str]) -> None:
        for i, sha in enumerate(self.candidates()):
            if i < self.keep or sha in protect:
                continue
            for path in self.directory.glob(f"{sha}.*"):
                path.unlink(missing_ok=True)


# --- verification ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verified:
    data: bytes
    trusted: Trusted
    header: dict[str, Any]

    @property
    def manifest(self) -> ModelManifest:
        return self.trusted.manifest

    @property
    def unsigned(self) -> bool:
        return self.trusted.unsigned


def verify_envelope(
    payload: bytes,
    trust: TrustPolicy,
    source: Source,
    max_bytes: int,
    download: Callable[[ModelManifest], bytes] | None = None,
) -> Verified:
    """Decode and check a model envelope; raise :class:`ModelRejected` with the reason."""
    try:
        env = decode(payload, max_total=max_bytes + 64 * 1024)
    except EnvelopeTooLarge:
        raise ModelRejected(
            f"model envelope of {len(payload)} bytes is more than the limit of {max_bytes} "
            "(models.max_model_mb)",
            code="too_large",
        ) from None
    except EnvelopeError as exc:
        raise ModelRejected(f"not a model envelope: {exc}") from None
    try:
        trusted = trust.verify(env.header, source)
    except TrustError as exc:
        raise ModelRejected(exc.reason, exc.manifest, exc.code) from None
    manifest = trusted.manifest
    if manifest.size > max_bytes:
        raise ModelRejected(
            f"model {manifest.ref} is {manifest.size} bytes, more than the limit of {max_bytes}",
            manifest,
            "too_large",
        )
    data = env.payload
    if not data:
        if not manifest.url:
            raise ModelRejected(f"model {manifest.ref} carries neither bytes nor a url", manifest)
        if download is None:
            raise ModelRejected(f"model {manifest.ref} must be downloaded, but downloads are off", manifest)
        data = download(manifest)
    if len(data) != manifest.size:
        raise ModelRejected(
            f"model {manifest.ref} is truncated or padded: {len(data)} bytes, manifest says {manifest.size}",
            manifest,
        )
    if sha256_hex(data) != manifest.sha256:
        raise ModelRejected(f"model {manifest.ref}: sha256 does not match the manifest (tampered?)", manifest)
    return Verified(data, trusted, env.header)


def http_download(
    manifest: ModelManifest, max_bytes: int, timeout: float, ca_file: Path | None = None
) -> bytes:
    """Fetch a model by its manifest's url, never reading more than the manifest's size + 1; an
    https:// hub is verified with ``ca_file`` (the fleet's CA, ``broker.ca_file``) when given."""
    assert manifest.url is not None
    if not manifest.url.startswith(("http://", "https://")):
        raise ModelRejected(f"model {manifest.ref}: unsupported url {manifest.url!r}", manifest)
    limit = min(manifest.size, max_bytes) + 1
    try:
        context = client_context(ca_file) if ca_file else None
        with urllib.request.urlopen(manifest.url, timeout=timeout, context=context) as resp:
            chunks = []
            total = 0
            while total < limit:
                chunk = resp.read(min(1 << 20, limit - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except OSError as exc:
        raise ModelRejected(
            f"model {manifest.ref}: download from {manifest.url} failed: {exc}", manifest, "download"
        ) from None
    return b"".join(chunks)


# --- loading and smoke test -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Loaded:
    pilot: ModelPilot
    load_ms: float
    latency_ms: float


def smoke_image(manifest: ModelManifest, frame: NDArray[np.uint8] | None) -> NDArray[np.uint8]:
    if frame is not None:
        return frame
    inp = manifest.card.input
    c = inp.crop
    h, w = inp.height + c.top + c.bottom, inp.width + c.left + c.right
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def load_and_test(
    manifest: ModelManifest,
    data: bytes,
    *,
    threads: int,
    warmup_runs: int,
    max_latency_ms: float,
    frame: NDArray[np.uint8] | None,
) -> Loaded:
    """Load in the runtime for the model's format, warm up and smoke-test (runs off the loop)."""
    t0 = time.perf_counter()
    try:
        model: LoadedModel = runtime_for(manifest.format).load(data, manifest.card, threads)
    except (ModelLoadError, RuntimeUnavailable) as exc:
        raise ModelRejected(f"model {manifest.ref}: {exc}", manifest, "load") from None
    pilot = ModelPilot(manifest, model)
    try:
        image = smoke_image(manifest, frame)
        sample = FrameStack(manifest.card.input).push(preprocess(image, manifest.card.input))
        latencies = []
        for _ in range(warmup_runs + 1):
            t = time.perf_counter()
            try:
                raw = model.run(sample)
            except Exception as exc:
                raise ModelRejected(
                    f"model {manifest.ref} fails to run: {str(exc)[:300]}", manifest
                ) from None
            latencies.append((time.perf_counter() - t) * 1000)
            _check_outputs(manifest, raw)
        latency = statistics.median(latencies[1:]) if len(latencies) > 1 else latencies[0]
        if latency > max_latency_ms:
            raise ModelRejected(
                f"model {manifest.ref} is too slow: {latency:.1f} ms per inference, "
                f"budget {max_latency_ms:.1f} ms",
                manifest,
            )
    except BaseException:
        pilot.close()
        raise
    return Loaded(pilot, (time.perf_counter() - t0) * 1000, latency)


def _check_outputs(manifest: ModelManifest, raw: dict[str, NDArray[np.float32]]) -> None:
    try:
        decode_outputs(manifest.card, raw)
    except ContractError as exc:
        raise ModelRejected(f"model {manifest.ref} smoke test: {exc}", manifest, "smoke_test") from None
    for out in manifest.card.outputs:
        if out.kind != "linear":
            continue
        lo, hi = out.range
        span = hi - lo
        value = float(np.asarray(raw[out.tensor]).reshape(-1)[0])
        # Small overshoot is normal for a regression head (it is clipped); far outside is broken.
        if not lo - span <= value <= hi + span:
            raise ModelRejected(
                f"model {manifest.ref} smoke test: {out.name} output {value:.3g} is far outside {out.range}",
                manifest,
                "smoke_test",
            )


# --- the manager ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Offer:
    payload: bytes
    arrival_ns: int
    source: Source = "car"


class ModelManager:
    """Takes model offers from MQTT, runs the pipeline above and reports through callbacks."""

    def __init__(
        self,
        loop: ControlLoop,
        cache: ModelCache,
        *,
        trust: TrustPolicy,
        max_bytes: int,
        threads: int,
        warmup_runs: int,
        max_latency_ms: float,
        download_timeout_s: float,
        latest_frame: Callable[[], NDArray[np.uint8] | None],
        on_event: Callable[[dict[str, Any]], None],
        on_state: Callable[[ModelState], None],
        kind: ModelKind = "pilot",
        install: Callable[[Loaded, Callable[[int, int], None]], None] | None = None,
        ca_file: Path | None = None,
    ) -> None:
        # kind and install make this the manager of another model slot (edge.detector_slot).
        self.kind = kind
        self._install = install or (lambda loaded, done: loop.install_pilot(PILOT_SLOT, loaded.pilot, done))
        self.loop = loop
        self.cache = cache
        self.trust = trust
        self.max_bytes = max_bytes
        self.threads = threads
        self.warmup_runs = warmup_runs
        self.max_latency_ms = max_latency_ms
        self.download_timeout_s = download_timeout_s
        self.ca_file = ca_file  # verifies an https:// hub that large models download from
        self.latest_frame = latest_frame
        self.on_event = on_event
        self.on_state = on_state
        self._offers: dict[Source, _Offer | None] = {"car": None, "group": None}
        self._wake = asyncio.Event()
        self._handled: _Offer | None = None
        self._rejected_digests: dict[str, str] = {}
        self.active: ModelManifest | None = None
        self.loaded_ms: float | None = None
        self.previous: str | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self.rejections = 0
        self.last_swap: dict[str, Any] | None = None

    # --- state ------------------------------------------------------------------------------------
    def state(self) -> ModelState:
        return ModelState(
            active=self.active.ref if self.active else None,
            sha256=self.active.sha256 if self.active else None,
            loaded_ms=round(self.loaded_ms, 3) if self.loaded_ms is not None else None,
            previous=self.previous,
            last_error=self.last_error,
            ts=time.time(),
        )

    # --- offers (event loop thread) ---------------------------------------------------------------
    def offer(self, source: Source, payload: bytes, arrival_ns: int | None = None) -> None:
        """A message on the car's or the group's model topic (empty payload: assignment cleared)."""
        self._offers[source] = _Offer(payload, arrival_ns or time.monotonic_ns(), source) if payload else None
        self._wake.set()

    def _wanted(self) -> _Offer | None:
        return self._offers["car"] or self._offers["group"]

    async def run(self) -> None:
        """Process offers one at a time; the newest assignment always wins over older pending ones."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            offer = self._wanted()
            if offer is None or offer is self._handled:
                continue
            self._handled = offer
            await self.process(offer.payload, offer.arrival_ns, offer.source)

    async def process(self, payload: bytes, arrival_ns: int, source: Source = "car") -> bool:
        """Run the whole pipeline for one envelope; True when the model now drives."""
        digest = await asyncio.to_thread(lambda: hashlib.sha256(payload).hexdigest())
        if digest in self._rejected_digests:
            log.info("model envelope already rejected: %s", self._rejected_digests[digest])
            return False
        manifest: ModelManifest | None = None
        try:
            verified = await asyncio.to_thread(
                verify_envelope,
                payload,
                self.trust,
                source,
                self.max_bytes,
                lambda m: http_download(m, self.max_bytes, self.download_timeout_s, self.ca_file),
            )
            manifest = verified.manifest
            check_kind(manifest, self.kind)
            await asyncio.to_thread(self.trust.accept, verified.trusted)
            if self.active is not None and manifest.sha256 == self.active.sha256:
                log.info("model %s is already active", manifest.ref)
                return False
            if verified.unsigned:
                log.warning(
                    "model %s is not signed; accepted because models.allow_unsigned is on", manifest.ref
                )
            await asyncio.to_thread(self.cache.store, manifest, verified.data, verified.header)
            loaded = await asyncio.to_thread(
                load_and_test,
                manifest,
                verified.data,
                threads=self.threads,
                warmup_runs=self.warmup_runs,
                max_latency_ms=self.max_latency_ms,
                frame=self.latest_frame(),
            )
        except ModelRejected as exc:
            self._reject(exc.reason, exc.manifest or manifest, digest, exc.code)
            return False
        except Exception as exc:  # anything unexpected must not take the daemon down
            log.exception("model pipeline failed")
            self._reject(f"{type(exc).__name__}: {exc}", manifest, digest)
            return False
        await self._swap(loaded, arrival_ns)
        return True

    async def _swap(self, loaded: Loaded, arrival_ns: int | None) -> None:
        manifest = loaded.pilot.manifest
        aloop = asyncio.get_running_loop()
        installed: asyncio.Future[tuple[int, int]] = aloop.create_future()

        def resolve(tick: int, t_ns: int) -> None:
            if not installed.done():
                installed.set_result((tick, t_ns))

        def on_installed(tick: int, t_ns: int) -> None:  # on the control thread
            aloop.call_soon_threadsafe(resolve, tick, t_ns)

        self._install(loaded, on_installed)
        if arrival_ns is None:
            # At boot the loop is not ticking yet; the model drives from its first tick.
            tick, t_ns = 0, time.monotonic_ns()
        else:
            try:
                tick, t_ns = await asyncio.wait_for(asyncio.shield(installed), timeout=10.0)
            except TimeoutError:
                tick, t_ns = -1, time.monotonic_ns()
                log.error("control loop did not pick up model %s within 10 s", manifest.ref)
        await asyncio.to_thread(self._mark_active, manifest.sha256)
        previous = self.active.ref if self.active else None
        self.previous = previous
        self.active = manifest
        self.loaded_ms = loaded.load_ms
        self.last_error = None
        self.swaps += 1
        swap_ms = (t_ns - arrival_ns) / 1e6 if arrival_ns is not None else 0.0
        self.last_swap = {"tick": tick, "t_ns": t_ns, "swap_ms": swap_ms, "ref": manifest.ref}
        log.info(
            "model %s drives from tick %d (load+test %.0f ms, %.0f ms after arrival)",
            manifest.ref,
            tick,
            loaded.load_ms,
            swap_ms,
        )
        if arrival_ns is not None:
            self.on_event(
                {
                    "type": "model_swapped",
                    "name": manifest.name,
                    "version": manifest.version,
                    "sha256": manifest.sha256,
                    "previous": previous,
                    "load_ms": round(loaded.load_ms, 3),
                    "swap_ms": round(max(0.0, swap_ms), 3),
                }
            )
        self.on_state(self.state())

    def _mark_active(self, sha256: str) -> None:
        self.cache.set_active(sha256)
        self.cache.prune(protect={sha256})

    def _reject(
        self, reason: str, manifest: ModelManifest | None, digest: str, code: str = "invalid"
    ) -> None:
        self.rejections += 1
        self.last_error = reason
        self._rejected_digests[digest] = reason
        if len(self._rejected_digests) > 64:
            self._rejected_digests.pop(next(iter(self._rejected_digests)))
        log.warning("model rejected: %s", reason)
        event: dict[str, Any] = {"type": "model_rejected", "reason": reason[:1000], "code": code}
        if manifest is not None:
            event.update(name=manifest.name, version=manifest.version, sha256=manifest.sha256)
        self.on_event(event)
        self.on_state(self.state())

    # --- boot ---------------------------------------------------------------------------------------
    async def load_cached(self) -> bool:
        """Drive the last good model from the cache (or the newest one that still loads)."""
        for sha in await asyncio.to_thread(self.cache.candidates):
            try:
                header, data = await asyncio.to_thread(self.cache.load, sha)
                manifest = self.trust.verify_cached(header)
                check_kind(manifest, self.kind)
                loaded = await asyncio.to_thread(
                    load_and_test,
                    manifest,
                    data,
                    threads=self.threads,
                    warmup_runs=self.warmup_runs,
                    max_latency_ms=self.max_latency_ms,
                    frame=None,
                )
            except (ModelRejected, TrustError, ContractError, OSError, json.JSONDecodeError) as exc:
                log.warning("cached model %s unusable: %s", sha[:12], exc)
                continue
            await self._swap(loaded, None)
            log.info("booted with cached model %s", manifest.ref)
            return True
        return False


def model_manager(
    config: CarConfig,
    loop: ControlLoop,
    cache_dir: Path,
    trust: TrustPolicy,
    *,
    latest_frame: Callable[[], NDArray[np.uint8] | None],
    on_event: Callable[[dict[str, Any]], None],
    on_state: Callable[[ModelState], None],
    kind: ModelKind = "pilot",
    install: Callable[[Loaded, Callable[[int, int], None]], None] | None = None,
) -> ModelManager:
    """A model slot's manager with the car's ``models`` settings (the pilot's slot by default)."""
    m = config.models
    return ModelManager(
        loop,
        ModelCache(cache_dir, keep=m.keep),
        trust=trust,
        max_bytes=int(m.max_model_mb * 1024 * 1024),
        threads=m.threads,
        warmup_runs=m.warmup_runs,
        max_latency_ms=m.smoke_latency_ms or 0.8 * 1000.0 / config.loop.hz,
        download_timeout_s=m.download_timeout_s,
        latest_frame=latest_frame,
        on_event=on_event,
        on_state=on_state,
        kind=kind,
        install=install,
        ca_file=config.broker.ca_file,  # the fleet's CA signs the hub API's certificate too
    )


def check_kind(manifest: ModelManifest, kind: ModelKind) -> None:
    """A pilot never lands in the detector's slot, nor a classifier in the pilot's."""
    if manifest.card.slot_kind != kind:
        raise ModelRejected(
            f"model {manifest.ref} is a {manifest.card.slot_kind} (its card's kind); "
            f"this slot takes a {kind}",
            manifest,
        )


def load_model_keys(
    models: ModelsSection, override: Ed25519PublicKey | list[Ed25519PublicKey] | None = None
) -> KeyRing:
    """The public keys models must be signed with: every PEM block in ``models.public_key`` and
    ``models.trusted_keys`` (two while a key is rotated). Empty: unsigned models only."""
    if override is not None:
        return KeyRing(override if isinstance(override, list) else [override])
    keys: list[Ed25519PublicKey] = []
    paths = [p for p in (models.public_key, *models.trusted_keys) if p is not None]
    for path in paths:
        if not path.exists():
            if models.allow_unsigned:
                log.warning("models key %s not found; accepting unsigned models only", path)
                continue
            raise ConfigError(
                f"models.public_key: {path} not found (copy the hub's public key there, or set "
                "models.allow_unsigned = true for development)"
            )
        try:
            keys.extend(load_public_keys(path))
        except ContractError as exc:
            raise ConfigError(f"models.public_key: {path}: {exc}") from None
    if not keys and not models.allow_unsigned:
        log.warning("no models.public_key: every model sent to this car will be rejected")
    return KeyRing(keys)
