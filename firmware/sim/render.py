"""First-person camera: the ground plane seen through a pinhole camera, by homography (OpenCV).

The track is drawn once into a top-down texture (road, white borders, dashed centre line, start
line, floor). A frame is then one perspective warp of that texture per level of detail (far rows
sample a pre-filtered, smaller copy, so distant lines do not shimmer), a panoramic backdrop above
the horizon that turns with the car, and the obstacles as shaded boxes. Domain randomisation
redraws the texture and backdrop with new colours, brightness and noise at each reset, and adds
blur and sensor noise per frame, all driven by the world's seed.

The road is one of several floor surfaces (:data:`SURFACES`: asphalt, wood planks, carpet, tiles),
drawn as a pattern inside the borders; with ``Randomization.surfaces`` each reset draws a surface
and an off-track floor. Obstacles are drawn by kind, each in its own shape and colours so that a
camera of 160×120 pixels tells them apart a metre away: boxes (orange by default; magenta
crates in randomised scenes), tapered orange cones with a white band, teal-and-white striped wall
segments and white or silver parked cars with a dark cabin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from firmware.sim.obstacles import Obstacle
from firmware.sim.track import Track

Image = NDArray[np.uint8]
RGB = tuple[int, int, int]

_LEVELS = 3  # level-of-detail textures: full, 1/2, 1/4 resolution
_DRAW_RANGE_M = 8.0  # obstacles farther away than this are a few pixels at most: not drawn

Surface = Literal["asphalt", "wood", "carpet", "tile"]
SURFACES: tuple[Surface, ...] = ("asphalt", "wood", "carpet", "tile")
OFF_TRACK = "offtrack"  # the surface label outside the borders


@dataclass(frozen=True, slots=True)
class RenderConfig:
    """The simulated camera. Pose is relative to the car's rear axle; pitch is downwards."""

    width: int = 160
    height: int = 120
    fov_deg: float = 120.0  # horizontal field of view
    camera_height: float = 0.16  # m above the ground
    camera_forward: float = 0.12  # m ahead of the rear axle
    pitch_deg: float = 25.0  # down from horizontal
    grayscale: bool = False  # True: (H, W, 1) luminance instead of (H, W, 3) RGB
    px_per_m: float = 100.0  # texture resolution
    max_texture_px: int = 4096
    floor_margin_m: float = 3.0  # textured floor around the track; beyond it, plain floor colour
    border_line_m: float = 0.05
    center_line_m: float = 0.025
    dash_m: float = 0.15  # centre-line dash and gap length
    road_rgb: RGB = (48, 48, 52)
    border_rgb: RGB = (235, 235, 230)
    center_rgb: RGB = (235, 190, 40)
    floor_rgb: RGB = (72, 104, 64)
    obstacle_rgb: RGB = (225, 140, 40)
    surface: Surface = "asphalt"  # the road's surface when it is not randomised

    def __post_init__(self) -> None:
        if self.surface not in SURFACES:
            raise ValueError(f"surface must be one of {', '.join(SURFACES)}, got {self.surface!r}")
        if not (8 <= self.width <= 4096 and 8 <= self.height <= 4096):
            raise ValueError(f"camera size {self.width}×{self.height} is out of range")
        if not 10 <= self.fov_deg <= 170:
            raise ValueError(f"fov_deg must be in [10, 170], got {self.fov_deg}")
        if not self.camera_height > 0:
            raise ValueError(f"camera_height must be positive, got {self.camera_height}")
        if not -10 <= self.pitch_deg < 89:
            raise ValueError(f"pitch_deg must be in [-10, 89), got {self.pitch_deg}")
        if not 10 <= self.px_per_m <= 1000:
            raise ValueError(f"px_per_m must be in [10, 1000], got {self.px_per_m}")

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3


@dataclass(frozen=True, slots=True)
class Randomization:
    """Domain randomisation, drawn from the world's seed at each reset (off by default)."""

    enabled: bool = False
    brightness: tuple[float, float] = (0.6, 1.35)  # gain on every colour
    color_jitter: float = 0.15  # ± per-channel gain
    texture_noise: tuple[float, float] = (0.0, 14.0)  # std of grain baked into the texture (levels)
    blur_sigma: tuple[float, float] = (0.0, 1.0)  # per-frame Gaussian blur (pixels)
    pixel_noise: tuple[float, float] = (0.0, 5.0)  # per-frame sensor noise std (levels)
    pitch_jitter_deg: float = 2.0
    height_jitter_m: float = 0.01
    surfaces: bool = False  # also draw the road surface and the off-track floor per reset
    surface_choices: tuple[Surface, ...] = SURFACES  # the road surfaces drawn from

    def __post_init__(self) -> None:
        for name in ("brightness", "texture_noise", "blur_sigma", "pixel_noise"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"Randomization.{name} must be 0 <= low <= high, got {(lo, hi)}")
        if not self.surface_choices or any(v not in SURFACES for v in self.surface_choices):
            raise ValueError(f"Randomization.surface_choices must be some of {', '.join(SURFACES)}")
        if not 0 <= self.color_jitter < 1:
            raise ValueError(f"Randomization.color_jitter must be in [0, 1), got {self.color_jitter}")


_FLOORS: list[RGB] = [(72, 104, 64), (96, 96, 92), (58, 74, 112), (128, 108, 84), (40, 60, 40)]
_ROADS: list[RGB] = [(48, 48, 52), (30, 30, 32), (70, 70, 74), (55, 50, 48)]
# Off-track floors when surfaces are randomised: grass, concrete, dark turf (unlike any road).
_OFF_FLOORS: list[RGB] = [(72, 104, 64), (110, 112, 104), (40, 62, 40), (96, 120, 70)]
_SURFACE_RGB: dict[str, list[RGB]] = {
    "asphalt": _ROADS,
    "wood": [(150, 104, 60), (176, 128, 80), (120, 80, 46)],
    "carpet": [(140, 40, 44), (44, 62, 132), (96, 44, 104)],  # no brown: that is the wood's
    "tile": [(206, 204, 196), (190, 180, 160), (170, 190, 196)],
}
# Obstacle colours per kind: hues no other kind, surface or floor has (a box used to be the
# cone's orange, a wall the tile's grey, a car the grass's green or the wall's red: the classifier
# mixed them).
_KIND_RGB: dict[str, list[RGB]] = {
    "cone": [(250, 96, 20), (245, 120, 10)],
    "wall": [(20, 150, 160), (30, 130, 150)],  # teal, with white stripes
    "car": [(228, 228, 232), (200, 202, 210)],  # white or silver, the cabin dark
}
# Boxes in randomised scenes: crates in colours unlike the cone's orange and every surface's.
_SCENE_BOX_RGB: list[RGB] = [(200, 40, 160), (170, 50, 190), (215, 70, 175)]
_STRIPE_RGB: RGB = (240, 240, 235)  # a cone's band and a wall's stripes
_WALL_STRIPES = 5


@dataclass(frozen=True, slots=True)
class _Look:
    """The per-episode appearance."""

    road: RGB
    border: RGB
    center: RGB
    floor: RGB
    obstacle: RGB
    sky_top: RGB
    sky_bottom: RGB
    wall: RGB
    gain: tuple[float, float, float]
    grain: float
    blur_sigma: float
    pixel_noise: float
    pitch_deg: float
    camera_height: float
    surface: str = "asphalt"
    kind_rgb: tuple[tuple[str, RGB], ...] = ()  # obstacle colour per kind other than "box"


class Renderer:
    """Renders the first-person view of one track. Not thread-safe: one per world."""

    def __init__(
        self, track: Track, config: RenderConfig | None = None, obstacles: Sequence[Obstacle] = ()
    ) -> None:
        self.track = track
        self.config = config or RenderConfig()
        self.obstacles = tuple(obstacles)
        c = self.config
        xmin, ymin, xmax, ymax = track.bounds(margin=c.floor_margin_m)
        span = max(xmax - xmin, ymax - ymin)
        self.px_per_m = min(c.px_per_m, c.max_texture_px / span)
        self._xmin, self._ymax = xmin, ymax
        self._tex_w = math.ceil((xmax - xmin) * self.px_per_m) + 1
        self._tex_h = math.ceil((ymax - ymin) * self.px_per_m) + 1
        self._to_tex = np.array(
            [
                [self.px_per_m, 0.0, -self.px_per_m * xmin],
                [0.0, -self.px_per_m, self.px_per_m * ymax],
                [0, 0, 1],
            ]
        )
        # Intrinsics (pixel centres at integer coordinates, as warpPerspective samples).
        self._fx = (c.width / 2) / math.tan(math.radians(c.fov_deg) / 2)
        self._cx = (c.width - 1) / 2
        self._cy = (c.height - 1) / 2
        self._K_inv = np.linalg.inv(np.array([[self._fx, 0, self._cx], [0, self._fx, self._cy], [0, 0, 1.0]]))
        self._frame = np.zeros((c.height, c.width, 3), np.uint8)
        self._frame_index = 0
        self._noise_bank: NDArray[np.int16] | None = None
        self._grain = self._unit_grain(np.random.default_rng(0))
        self._look = self._default_look()
        self._build()

    # ---- appearance --------------------------------------------------------------------------

    def _default_look(self) -> _Look:
        c = self.config
        return _Look(
            road=c.road_rgb,
            border=c.border_rgb,
            center=c.center_rgb,
            floor=c.floor_rgb,
            obstacle=c.obstacle_rgb,
            sky_top=(150, 185, 225),
            sky_bottom=(215, 225, 235),
            wall=(120, 120, 128),
            gain=(1.0, 1.0, 1.0),
            grain=6.0,
            blur_sigma=0.0,
            pixel_noise=0.0,
            pitch_deg=c.pitch_deg,
            camera_height=c.camera_height,
            surface=c.surface,
            kind_rgb=tuple((k, v[0]) for k, v in _KIND_RGB.items()),
        )

    def randomize(self, rng: np.random.Generator, randomization: Randomization) -> None:
        """Draw a new look (colours, light, grain, blur, noise, camera mount) and redraw."""
        if not randomization.enabled:
            if self._look != self._default_look():
                self._look = self._default_look()
                self._build()
            return
        r = randomization
        c = self.config

        def jitter(rgb: RGB, amount: float) -> RGB:
            return tuple(int(np.clip(v + rng.uniform(-amount, amount), 0, 255)) for v in rgb)  # type: ignore[return-value]

        b = rng.uniform(*r.brightness)
        gain = tuple(float(b * rng.uniform(1 - r.color_jitter, 1 + r.color_jitter)) for _ in range(3))
        self._look = _Look(
            road=jitter(_ROADS[rng.integers(len(_ROADS))], 10),
            border=jitter((235, 235, 230), 20),
            center=jitter((235, 190, 40), 25),
            floor=jitter(_FLOORS[rng.integers(len(_FLOORS))], 20),
            obstacle=jitter(c.obstacle_rgb, 30),
            sky_top=jitter((150, 185, 225), 40),
            sky_bottom=jitter((215, 225, 235), 20),
            wall=jitter((120, 120, 128), 50),
            gain=(gain[0], gain[1], gain[2]),
            grain=float(rng.uniform(*r.texture_noise)),
            blur_sigma=float(rng.uniform(*r.blur_sigma)),
            pixel_noise=float(rng.uniform(*r.pixel_noise)),
            pitch_deg=c.pitch_deg + float(rng.uniform(-r.pitch_jitter_deg, r.pitch_jitter_deg)),
            camera_height=max(
                0.02, c.camera_height + float(rng.uniform(-r.height_jitter_m, r.height_jitter_m))
            ),
            surface=c.surface,
            kind_rgb=tuple((k, v[0]) for k, v in _KIND_RGB.items()),
        )
        if r.surfaces:
            self._look = self._random_surfaces(rng, self._look, r.surface_choices)
        self._grain = self._unit_grain(rng)
        self._build()

    @staticmethod
    def _random_surfaces(rng: np.random.Generator, look: _Look, choices: Sequence[str]) -> _Look:
        """Draw the road surface, its colour, the off-track floor and the obstacles' colours."""

        def pick(options: list[RGB], amount: float) -> RGB:
            rgb = options[int(rng.integers(len(options)))]
            return tuple(int(np.clip(v + rng.uniform(-amount, amount), 0, 255)) for v in rgb)  # type: ignore[return-value]

        surface = choices[int(rng.integers(len(choices)))]
        kinds = tuple((k, pick(v, 20)) for k, v in ({"box": _SCENE_BOX_RGB} | _KIND_RGB).items())
        return replace(
            look,
            surface=surface,
            road=pick(_SURFACE_RGB[surface], 12),
            floor=pick(_OFF_FLOORS, 14),
            kind_rgb=kinds,
        )

    def _unit_grain(self, rng: np.random.Generator) -> NDArray[np.float32]:
        # Grain drawn at 1/4 resolution and scaled up: blotchy like carpet or asphalt, and cheap.
        small = rng.standard_normal((self._tex_h // 4 + 1, self._tex_w // 4 + 1), dtype=np.float32)
        return np.asarray(
            cv2.resize(small, (self._tex_w, self._tex_h), interpolation=cv2.INTER_LINEAR), dtype=np.float32
        )

    def _build(self) -> None:
        look = self._look
        c = self.config
        s = self.px_per_m
        gain = np.array(look.gain, np.float32)

        def lit(rgb: RGB) -> tuple[int, int, int]:
            # Light and colour cast applied to the paint, so the texture is drawn once, lit.
            r, g, b = (int(v) for v in np.clip(np.array(rgb, np.float32) * gain, 0, 255))
            return r, g, b

        tex = np.empty((self._tex_h, self._tex_w, 3), np.uint8)
        tex[:] = lit(look.floor)

        def px(points: NDArray[np.float64]) -> NDArray[np.int32]:
            # Fixed point with 4 fractional bits, for sub-pixel accurate anti-aliased drawing.
            u = (points[:, 0] - self._xmin) * s
            v = (self._ymax - points[:, 1]) * s
            return np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)

        t = self.track
        cv2.fillPoly(tex, [px(t.outer)], lit(look.road), cv2.LINE_AA, shift=4)
        cv2.fillPoly(tex, [px(t.inner)], lit(look.floor), cv2.LINE_AA, shift=4)
        if look.surface != "asphalt":
            road = np.zeros(tex.shape[:2], np.uint8)
            cv2.fillPoly(road, [px(t.outer)], 255, cv2.LINE_AA, shift=4)
            cv2.fillPoly(road, [px(t.inner)], 0, cv2.LINE_AA, shift=4)
            pattern = _surface_pattern(look.surface, tex.shape[:2], s, np.array(lit(look.road), np.float32))
            alpha = road[:, :, None].astype(np.float32) / 255.0
            tex = (tex * (1 - alpha) + pattern * alpha).astype(np.uint8)
        border_px = max(1, round(c.border_line_m * s))
        cv2.polylines(
            tex, [px(t.inner), px(t.outer)], True, lit(look.border), border_px, cv2.LINE_AA, shift=4
        )
        # Dashed centre line.
        dash = c.dash_m
        n = int(t.length // (2 * dash))
        dashes = []
        for k in range(n):
            s0 = 2 * k * dash
            pts = np.array([t.point_at(s0 + f * dash) for f in (0.0, 0.5, 1.0)])
            dashes.append(px(pts))
        cv2.polylines(
            tex, dashes, False, lit(look.center), max(1, round(c.center_line_m * s)), cv2.LINE_AA, shift=4
        )
        # Start/finish line across the road at waypoint 0, in the border colour.
        (ix, iy), (ox, oy) = t.inner[0], t.outer[0]
        cv2.line(
            tex,
            *(tuple(p) for p in px(np.array([[ix, iy], [ox, oy]]))),
            lit(look.border),
            border_px,
            cv2.LINE_AA,
            shift=4,
        )  # type: ignore[call-overload]
        if look.grain > 0:
            grain = (self._grain * look.grain).astype(np.int16)
            tex = np.asarray(cv2.add(tex, cv2.merge([grain, grain, grain]), dtype=cv2.CV_8U), np.uint8)
        self._floor_far = lit(look.floor)
        levels = [tex]
        for _ in range(_LEVELS - 1):
            levels.append(np.asarray(cv2.pyrDown(levels[-1]), np.uint8))
        self._levels = levels
        self._pano = self._backdrop(np.random.default_rng(len(self.track.center)), gain)
        if look.pixel_noise > 0:
            bank_rng = np.random.default_rng(int(look.pixel_noise * 1000))
            self._noise_bank = (
                bank_rng.standard_normal((8, c.height, c.width, 1), dtype=np.float32) * look.pixel_noise
            ).astype(np.int16)
        else:
            self._noise_bank = None
        self._plan_bands()

        def shades(rgb: RGB) -> list[tuple[float, ...]]:
            base = np.array(rgb, np.float32) * gain
            return [tuple(float(v) for v in np.clip(base * k, 0, 255)) for k in (1.0, 0.8, 0.62)]

        self._obstacle_shades = shades(look.obstacle)
        self._kind_shades = {kind: shades(rgb) for kind, rgb in look.kind_rgb}
        self._cabin_shades = shades((28, 30, 36))
        self._stripe_shades = shades(_STRIPE_RGB)

    def _backdrop(self, rng: np.random.Generator, gain: NDArray[np.float32]) -> Image:
        """A 360° strip above the horizon: sky gradient and a skyline of walls and blocks.

        One column per image column's worth of view angle, so a frame's backdrop is a plain slice;
        the strip is extended by one image width so that slice never wraps.
        """
        look = self._look
        c = self.config
        rows = c.height
        cols = max(c.width, round(c.width * 360.0 / c.fov_deg))
        t = np.linspace(0, 1, rows, dtype=np.float32)[:, None]
        top = np.array(look.sky_top, np.float32)
        bottom = np.array(look.sky_bottom, np.float32)
        pano = (bottom * (1 - t) + top * t)[:, None, :].repeat(cols, axis=1)  # row 0 at the horizon here
        wall = np.array(look.wall, np.float32)
        x = 0
        while x < cols:
            w = int(rng.integers(max(2, cols // 50), max(3, cols // 12)))
            h = int(rng.integers(2, max(3, rows // 4)))
            pano[:h, x : x + w] = wall * float(rng.uniform(0.7, 1.2))
            x += w
        pano *= gain
        # Flip so the last row touches the horizon (a frame takes the bottom rows), and extend.
        strip = np.clip(pano, 0, 255).astype(np.uint8)[::-1]
        self._pano_cols = cols
        return np.ascontiguousarray(np.concatenate([strip, strip[:, : c.width]], axis=1))

    def _plan_bands(self) -> None:
        """Split the ground rows into bands, each drawn from the texture level that matches its
        footprint (texels per pixel across the view). Fixed for a look, so planned once."""
        c = self.config
        H = c.height
        pitch = math.radians(self._look.pitch_deg)
        self._horizon = self._cy - self._fx * math.tan(pitch)  # image row of the horizon
        first = max(0, min(H, math.floor(self._horizon) + 1))
        self._first_ground = first
        rows = np.arange(first, H)
        angle = pitch + np.arctan((rows - self._cy) / self._fx)
        slant = self._look.camera_height / np.maximum(np.sin(angle), 1e-6)
        texels = slant / self._fx * self.px_per_m
        level = np.clip(np.floor(np.log2(np.maximum(texels, 1e-6)) + 0.5), 0, _LEVELS - 1).astype(np.int64)
        bands = []
        start = first
        while start < H:
            lvl = int(level[start - first])
            end = start + 1
            while end < H and int(level[end - first]) == lvl:
                end += 1
            scale = 0.5**lvl
            to_level = np.array([[scale, 0, 0.5 * scale - 0.5], [0, scale, 0.5 * scale - 0.5], [0, 0, 1.0]])
            shift = np.array([[1.0, 0, 0], [0, 1.0, start], [0, 0, 1.0]])
            bands.append((start, end, lvl, to_level, shift))
            start = end
        self._bands = bands

    @property
    def surface(self) -> str:
        """The road's surface in the current look."""
        return self._look.surface

    # ---- frames ------------------------------------------------------------------------------

    def reset_frames(self) -> None:
        """Restart the per-frame noise sequence (a reset with the same seed repeats frames)."""
        self._frame_index = 0

    def camera_pose(self, x: float, y: float, yaw: float) -> tuple[float, float, float]:
        """Camera position on the ground for a rear-axle pose."""
        f = self.config.camera_forward
        return x + f * math.cos(yaw), y + f * math.sin(yaw), self._look.camera_height

    def _rotation(self, yaw: float) -> NDArray[np.float64]:
        pitch = math.radians(self._look.pitch_deg)
        cy_, sy_ = math.cos(yaw), math.sin(yaw)
        cp, sp = math.cos(pitch), math.sin(pitch)
        right = (sy_, -cy_, 0.0)
        forward = (cy_ * cp, sy_ * cp, -sp)
        down = (-sp * cy_, -sp * sy_, -cp)
        return np.array([right, down, forward])

    def render(self, x: float, y: float, yaw: float) -> Image:
        """The camera image for the car's rear axle at ``(x, y)`` with heading ``yaw``.

        Returns a new ``(height, width, 3)`` RGB array, or ``(height, width, 1)`` if grayscale.
        """
        c = self.config
        look = self._look
        frame = self._frame
        cam_x, cam_y, cam_h = self.camera_pose(x, y, yaw)
        R = self._rotation(yaw)
        # Image → ground: back-project the pixel ray (R^T K^-1 p) and meet the plane z = 0.
        ray_to_ground = np.array([[-cam_h, 0.0, cam_x], [0.0, -cam_h, cam_y], [0.0, 0.0, 1.0]])
        image_to_tex = self._to_tex @ ray_to_ground @ R.T @ self._K_inv
        first = self._first_ground
        if first > 0:
            # Columns run clockwise in the strip; turning left (yaw up) moves the view left.
            j0 = round(-yaw / (2 * math.pi) * self._pano_cols) % self._pano_cols
            frame[:first] = self._pano[-first:, j0 : j0 + c.width]
        for start, end, lvl, to_level, shift in self._bands:
            cv2.warpPerspective(
                self._levels[lvl],
                to_level @ image_to_tex @ shift,
                (c.width, end - start),
                dst=frame[start:end],
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=self._floor_far,
            )
        if self.obstacles:
            self._draw_obstacles(frame, R, np.array([cam_x, cam_y, cam_h]))
        out: Image = frame
        if look.blur_sigma > 0.3:
            out = np.asarray(cv2.GaussianBlur(out, (0, 0), look.blur_sigma), dtype=np.uint8)
        if self._noise_bank is not None:
            noise = self._noise_bank[self._frame_index % len(self._noise_bank)]
            out = np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        self._frame_index += 1
        if c.grayscale:
            return np.asarray(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), dtype=np.uint8)[:, :, None]
        return out.copy() if out is frame else out

    def _draw_obstacles(self, frame: Image, R: NDArray[np.float64], cam: NDArray[np.float64]) -> None:
        far = _DRAW_RANGE_M**2
        near = [o for o in self.obstacles if (o.x - cam[0]) ** 2 + (o.y - cam[1]) ** 2 < far]
        order = sorted(near, key=lambda o: -((o.x - cam[0]) ** 2 + (o.y - cam[1]) ** 2))
        forward = R[2]
        for ob in order:
            if (ob.x - cam[0]) * forward[0] + (ob.y - cam[1]) * forward[1] < -ob.radius:
                continue  # wholly behind the camera
            palette = self._kind_shades.get(ob.kind, self._obstacle_shades)
            if ob.kind == "wall":
                self._draw_wall(frame, R, cam, ob, palette)
                continue
            taper = 0.8 if ob.kind == "cone" else 0.0  # a cone's top is a fifth of its base
            self._draw_solid(
                frame, R, cam, _frustum(ob, 0.0, ob.height, taper), _centre(ob, 0, ob.height), palette
            )
            if ob.kind == "cone":  # the white band round its middle, a touch proud of the body
                band = _frustum(ob, 0.45 * ob.height, 0.65 * ob.height, taper, grow=1.04)
                self._draw_solid(frame, R, cam, band, _centre(ob, 0, ob.height), self._stripe_shades)
            if ob.kind == "car":  # a dark cabin on the body's middle
                cabin = Obstacle(ob.x, ob.y, ob.yaw, ob.length * 0.5, ob.width * 0.8, 0.08)
                top = ob.height + cabin.height
                cverts = _frustum(cabin, ob.height, top, 0.0)
                self._draw_solid(frame, R, cam, cverts, _centre(cabin, ob.height, top), self._cabin_shades)

    def _draw_wall(
        self,
        frame: Image,
        R: NDArray[np.float64],
        cam: NDArray[np.float64],
        ob: Obstacle,
        palette: Sequence[tuple[float, ...]],
    ) -> None:
        """A wall segment in stripes of its colour and white along its length, far stripes first."""
        c, s = math.cos(ob.yaw), math.sin(ob.yaw)
        step = ob.length / _WALL_STRIPES
        stripes = []
        for k in range(_WALL_STRIPES):
            along = -ob.length / 2 + (k + 0.5) * step
            part = Obstacle(ob.x + along * c, ob.y + along * s, ob.yaw, step, ob.width, ob.height)
            stripes.append((-math.hypot(part.x - cam[0], part.y - cam[1]), k, part))
        for _, k, part in sorted(stripes, key=lambda t: t[0]):
            shades = palette if k % 2 == 0 else self._stripe_shades
            self._draw_solid(
                frame, R, cam, _frustum(part, 0.0, part.height, 0.0), _centre(part, 0, part.height), shades
            )

    def _draw_solid(
        self,
        frame: Image,
        R: NDArray[np.float64],
        cam: NDArray[np.float64],
        verts: NDArray[np.float64],
        centre: NDArray[np.float64],
        palette: Sequence[tuple[float, ...]],
    ) -> None:
        """Fill the camera-facing faces of a box (8 vertices: 4 at the bottom, 4 on top)."""
        near = 0.02
        cam_pts = (verts - cam) @ R.T  # camera frame: x right, y down, z forward
        if (cam_pts[:, 2] <= near).all():
            return
        faces = [(4, 5, 6, 7, 0)]  # top, shade index
        for i in range(4):
            j = (i + 1) % 4
            faces.append((i, j, j + 4, i + 4, 1 + (i % 2)))
        for face in faces:
            idx = list(face[:4])
            fc = verts[idx].mean(axis=0)
            if float(np.dot(fc - centre, cam - fc)) <= 0:
                continue  # facing away
            poly = _clip_near(cam_pts[idx], near)
            if len(poly) < 3:
                continue
            u, v = self._pixels(poly)
            pts = np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)
            cv2.fillConvexPoly(frame, pts, palette[face[4]], cv2.LINE_AA, shift=4)

    def visible_extent(self, x: float, y: float, yaw: float, ob: Obstacle) -> tuple[float, float, float]:
        """How big the camera shows ``ob`` for this car pose: the width and height in pixels of
        its projected bounding box clipped to the image, and the fraction of that box inside the
        image (0 when it is wholly behind the camera or outside the frame). No occlusion test."""
        cam_x, cam_y, cam_h = self.camera_pose(x, y, yaw)
        R = self._rotation(yaw)
        pts = (_frustum(ob, 0.0, ob.height, 0.0) - np.array([cam_x, cam_y, cam_h])) @ R.T
        pts = pts[pts[:, 2] > 0.02]
        if len(pts) == 0:
            return 0.0, 0.0, 0.0
        u, v = self._pixels(pts)
        w, h = self.config.width, self.config.height
        full = max(float(u.max() - u.min()), 1e-6) * max(float(v.max() - v.min()), 1e-6)
        cw = max(0.0, min(float(u.max()), w - 0.5) - max(float(u.min()), -0.5))
        ch = max(0.0, min(float(v.max()), h - 0.5) - max(float(v.min()), -0.5))
        return cw, ch, min(1.0, cw * ch / full)

    def _pixels(self, pts: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Image coordinates ``(u, v)`` of camera-frame points (N×3, in front of the camera)."""
        return self._fx * pts[:, 0] / pts[:, 2] + self._cx, self._fx * pts[:, 1] / pts[:, 2] + self._cy

    def object_in_view(self, x: float, y: float, yaw: float, ox: float, oy: float) -> bool:
        """Whether a ground point ``(ox, oy)`` projects inside the image for this car pose."""
        cam_x, cam_y, cam_h = self.camera_pose(x, y, yaw)
        p = self._rotation(yaw) @ np.array([ox - cam_x, oy - cam_y, -cam_h])
        if p[2] <= 0.02:
            return False
        u = self._fx * p[0] / p[2] + self._cx
        v = self._fx * p[1] / p[2] + self._cy
        return bool(-0.5 <= u <= self.config.width - 0.5 and -0.5 <= v <= self.config.height - 0.5)

    def top_view(self, max_px: int = 1024) -> Image:
        """The full-resolution ground texture (a bird's-eye view), scaled to at most ``max_px``."""
        tex = self._levels[0]
        scale = min(1.0, max_px / max(tex.shape[:2]))
        if scale < 1.0:
            return np.asarray(
                cv2.resize(tex, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8
            )
        return np.array(tex, dtype=np.uint8, copy=True)


def _surface_pattern(
    surface: str, shape: tuple[int, ...], px_per_m: float, rgb: NDArray[np.float32]
) -> NDArray[np.float32]:
    """A ``(H, W, 3)`` float image of the road surface in colour ``rgb`` (already lit)."""
    h, w = shape[0], shape[1]
    rng = np.random.default_rng(int(rgb.sum() * 7) + len(surface))
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    if surface == "wood":  # planks along x, each its own shade, dark seams, lengthwise grain
        plank = max(3.0, 0.12 * px_per_m)
        index = (rows // plank).astype(np.int64)
        shade = 1.0 + 0.12 * rng.standard_normal(int(index.max()) + 1).astype(np.float32)[index]
        grain = 1.0 + 0.06 * np.sin(cols * 0.35 + rows * 0.8 + 3.0 * np.sin(rows * 0.05))
        seam = np.where((rows % plank) < max(1.0, 0.012 * px_per_m), 0.45, 1.0)
        k = shade * grain * seam
    elif surface == "tile":  # square tiles with dark grout
        size = max(4.0, 0.30 * px_per_m)
        grout = max(1.0, 0.015 * px_per_m)
        line = ((rows % size) < grout) | ((cols % size) < grout)
        k = np.where(line, 0.45, 1.0).astype(np.float32)
    elif surface == "carpet":  # dense fibre noise
        k = 1.0 + 0.16 * rng.standard_normal((h, w), dtype=np.float32)
    else:
        k = np.ones((h, w), np.float32)
    return np.asarray(np.clip(rgb[None, None, :] * np.asarray(k, np.float32)[:, :, None], 0, 255), np.float32)


def _frustum(ob: Obstacle, z0: float, z1: float, taper: float, grow: float = 1.0) -> NDArray[np.float64]:
    """The 8 vertices (4 at ``z0``, 4 at ``z1``) of ``ob``'s footprint between two heights, the
    footprint shrinking linearly by ``taper`` of its size from the ground to the top."""
    out = []
    for z in (z0, z1):
        k = grow * (1.0 - taper * z / ob.height)
        out += [[ob.x + k * (gx - ob.x), ob.y + k * (gy - ob.y), z] for gx, gy in ob.corners()]
    return np.array(out)


def _centre(ob: Obstacle, z0: float, z1: float) -> NDArray[np.float64]:
    return np.array([ob.x, ob.y, (z0 + z1) / 2])


def _clip_near(poly: NDArray[np.float64], near: float) -> NDArray[np.float64]:
    """Sutherland–Hodgman clip of a camera-frame polygon against the plane z = near."""
    out: list[NDArray[np.float64]] = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        a_in, b_in = a[2] > near, b[2] > near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if out else np.zeros((0, 3))
