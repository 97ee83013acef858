"""The ``synthetic-scenes`` builder: procedurally generated street scenes, no data files needed.

Every scene is a small 3-D street seen through a pinhole camera whose height, focal length, lateral
position, horizon and vanishing point vary per image: a road with lane markings, sidewalks, a grass
verge, buildings of varying length, height and set-back along both sides (window grids on their
facades, end walls facing the camera), fences, trees, poles with traffic signs and lights, parked and
driving cars and pedestrians, all scaled by their depth and drawn far to near. Each shape is drawn
twice: into the label map (Cityscapes train ids, ``cv2.LINE_8`` so there is no anti-aliasing and every
pixel is exactly one class) and into the photo (a sky gradient with clouds, global brightness and colour
temperature, a sun shading gradient, lit and shaded facade sides, car shadows, sensor noise).

What tells the classes apart in a photo is their *texture*, as in the paper's argument for the
FCN-score (a segmenter of real photos fails on blurry ones): road, sidewalk, buildings, fences,
terrain and vegetation take their colours from one shared palette, per image and per object, so
colour alone names none of them, and each carries a fine texture of its own with a random phase per
image (diagonal grooves, paving joints, brick courses, slats, grass blades, leaves; see
:func:`_texture`). A translation that blurs the texture away, as an L1-trained generator's average
does, erases the class evidence; sky, cars, people, poles, signs and lights stay smooth and keep
their own colours.

Output (direction AtoB, like the paper's Cityscapes labels -> photo): A = the colour label map
(``CITYSCAPES.render`` of the train ids), B = the photo, and ``labels/<split>/<name>.png`` = the train
ids (the exact labels for FCN training and scoring). The default ``--format`` is ``png`` because JPEG
blurs label colours; with ``--format jpg`` the label extras remain exact.

A scene depends only on ``--seed`` and its name (``job_rng(seed, "synthetic-scenes", name)``), so it is
the same whatever split it lands in, however many workers build it, and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from p2ptools.buildkit import BuildOptions, DatasetBuilder, PairJob, PairResult, job_rng
from p2ptools.errors import ConfigError
from p2ptools.labels import CITYSCAPES
from p2ptools.options import Range

Draw = Callable[[], None]  # draws one object into the scene's labels and photo

_ID = {name: i for i, name in enumerate(CITYSCAPES.names)}
ROAD, SIDEWALK, BUILDING, FENCE, POLE = _ID["road"], _ID["sidewalk"], _ID["building"], _ID["fence"], _ID["pole"]
LIGHT, SIGN, VEGETATION, TERRAIN, SKY = _ID["traffic light"], _ID["traffic sign"], _ID["vegetation"], _ID["terrain"], _ID["sky"]
PERSON, CAR = _ID["person"], _ID["car"]

#: Texture amplitudes per train id: (the class texture of ``_texture``, coarse blotchy noise), relative to the colour.
_AMP = np.zeros((2, 256), np.float32)
for _cls, _fine, _coarse in (
    (ROAD, 0.22, 0.06), (SIDEWALK, 0.25, 0.05), (BUILDING, 0.25, 0.05), (FENCE, 0.3, 0.03),
    (POLE, 0.0, 0.03), (VEGETATION, 0.35, 0.10), (TERRAIN, 0.25, 0.08), (SKY, 0.0, 0.05),
    (PERSON, 0.0, 0.05), (CAR, 0.0, 0.03), (SIGN, 0.0, 0.02), (LIGHT, 0.0, 0.02),
):  # fmt: skip
    _AMP[:, _cls] = (_fine, _coarse)


def _surface(rng: np.random.Generator) -> np.ndarray:
    """A surface colour from the palette all textured classes share: colour alone names no class."""
    grey = rng.uniform(70, 200)
    return np.clip(grey + rng.normal(0, 25, 3), 0, 255).astype(np.float32)


_CARS = np.array([(200, 30, 30), (30, 50, 160), (230, 230, 230), (25, 25, 25), (150, 150, 155), (40, 110, 60), (220, 180, 40)], np.float32)


class _Scene:
    """Camera, canvases and drawing primitives of one scene (world: X right, Y up, Z forward, metres)."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.rng, self.size = rng, size
        self.f = size * rng.uniform(0.55, 0.95)  # focal length in pixels
        self.u0 = size * rng.uniform(0.32, 0.68)  # vanishing point
        self.v0 = size * rng.uniform(0.30, 0.52)  # horizon
        self.cam_h = rng.uniform(1.3, 2.2)
        self.cam_x = 0.0  # lateral camera position, road half width and sidewalk width: set by _layout_ground
        self.road_w = self.walk_w = 0.0
        self.labels = np.full((size, size), SKY, np.uint8)
        self.photo = np.zeros((size, size, 3), np.uint8)
        # nearest depth drawn: keeps projected coordinates small enough for OpenCV's fixed point
        self.z_near = max(0.4, self.f * 60.0 / 20000.0)

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(N, 3) world points (Z > 0) -> (N, 2) int32 pixel coordinates."""
        z = np.maximum(pts[:, 2], self.z_near)
        u = self.u0 + self.f * (pts[:, 0] - self.cam_x) / z
        v = self.v0 + self.f * (self.cam_h - pts[:, 1]) / z
        return np.round(np.stack([u, v], 1)).astype(np.int32)

    def scale(self, z: float) -> float:
        """Pixels per metre at depth ``z``."""
        return self.f / max(z, self.z_near)

    def poly(self, pts, cls: int | None, color, *, label_only: bool = False) -> None:
        """Fill a world polygon in the labels (class ``cls``; None = photo only) and the photo."""
        p = self.project(np.asarray(pts, np.float64))
        if cls is not None:
            cv2.fillPoly(self.labels, [p], int(cls), lineType=cv2.LINE_8)
        if not label_only:
            cv2.fillPoly(self.photo, [p], _color(color), lineType=cv2.LINE_AA)

    def ellipse(self, center, radii_m: tuple[float, float], cls: int, color) -> None:
        """A camera-facing ellipse (tree canopy, head) at a world centre."""
        c = self.project(np.asarray([center], np.float64))[0]
        s = self.scale(center[2])
        axes = (max(1, round(radii_m[0] * s)), max(1, round(radii_m[1] * s)))
        cv2.ellipse(self.labels, (int(c[0]), int(c[1])), axes, 0, 0, 360, int(cls), -1, lineType=cv2.LINE_8)
        cv2.ellipse(self.photo, (int(c[0]), int(c[1])), axes, 0, 0, 360, _color(color), -1, lineType=cv2.LINE_AA)

    def box_face(self, x0, x1, y0, y1, z, cls, color) -> None:
        """A camera-facing rectangle (constant Z)."""
        self.poly([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)], cls, color)


def _color(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.asarray(c, np.float64), 0, 255))


def _jitter(rng: np.random.Generator, color, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, amount, 3), 0, 255)


def _layout_ground(s: _Scene) -> None:
    rng = s.rng
    s.road_w = rng.uniform(3.0, 7.5)  # half width
    s.walk_w = rng.uniform(1.5, 4.0)
    s.cam_x = rng.uniform(-0.6, 0.6) * s.road_w
    far = 3000.0
    # sky: vertical gradient (clear blue to haze, or overcast grey), filled into the photo only
    overcast = rng.random() < 0.15
    top = _jitter(rng, (150, 155, 165) if overcast else (60, 110, 190), 20)
    low = _jitter(rng, (200, 200, 205) if overcast else (175, 200, 225), 15)
    rows = np.clip((np.arange(s.size) / max(s.v0, 1.0))[:, None], 0, 1)
    s.photo[:] = (top[None, :] * (1 - rows) + low[None, :] * rows)[:, None, :].astype(np.uint8)
    ground = [(-500, 0, s.z_near), (500, 0, s.z_near), (500, 0, far), (-500, 0, far)]
    s.poly(ground, TERRAIN, _surface(rng))
    road = [(-s.road_w, 0, s.z_near), (s.road_w, 0, s.z_near), (s.road_w, 0, far), (-s.road_w, 0, far)]
    s.poly(road, ROAD, _surface(rng))
    walk_color = _surface(rng)
    for side in (-1, 1):
        x0, x1 = side * s.road_w, side * (s.road_w + s.walk_w)
        s.poly([(x0, 0, s.z_near), (x1, 0, s.z_near), (x1, 0, far), (x0, 0, far)], SIDEWALK, walk_color)
    # lane markings (photo only: Cityscapes labels them road)
    mark = (235, 235, 225) if rng.random() < 0.8 else (230, 200, 60)
    z, dash, gap = s.z_near, rng.uniform(2, 4), rng.uniform(3, 8)
    while z < 120:
        s.poly([(-0.08, 0, z), (0.08, 0, z), (0.08, 0, z + dash), (-0.08, 0, z + dash)], None, mark)
        z += dash + gap
    for side in (-1, 1):
        x = side * (s.road_w - 0.3)
        s.poly([(x - 0.07, 0, s.z_near), (x + 0.07, 0, s.z_near), (x + 0.07, 0, 300), (x - 0.07, 0, 300)], None, mark)


def _buildings(s: _Scene) -> list[tuple[float, Draw]]:
    """Facade slabs along both sides, as (depth, draw) items for far-to-near drawing."""
    rng, items = s.rng, []
    sun = rng.uniform(0.55, 1.0)  # shade of the facade side facing away from the sun
    lit_side = rng.choice((-1, 1))
    for side in (-1, 1):
        setback = rng.uniform(0, 4) if rng.random() < 0.5 else 0.0
        x_front = side * (s.road_w + s.walk_w + setback)
        shade = 1.0 if side == lit_side else sun
        z = s.z_near * rng.uniform(1, 4)
        while z < 200:
            length = rng.uniform(8, 30)
            if rng.random() < 0.2:  # a gap: verge, trees or sky
                z += rng.uniform(4, 12)
                continue
            items.append((z, _building_drawer(s, side, x_front, z, z + length, rng.uniform(5, 35), shade)))
            z += length
        if setback > 1.5 and rng.random() < 0.5:  # a fence along the verge
            x = side * (s.road_w + s.walk_w + 0.2)
            zf0 = rng.uniform(2, 20)
            zf1 = zf0 + rng.uniform(10, 60)
            color = _surface(rng)
            items.append((zf1, lambda x=x, a=zf0, b=zf1, c=color: s.poly([(x, 0, a), (x, 0, b), (x, 1.3, b), (x, 1.3, a)], FENCE, c)))
    return items


def _building_drawer(s: _Scene, side: int, x: float, z0: float, z1: float, height: float, shade: float) -> Draw:
    rng = s.rng
    color = _surface(rng)
    glass = _jitter(rng, (60, 75, 95) if rng.random() < 0.7 else (160, 180, 200), 15)
    depth = rng.uniform(10, 25)
    n_rows, n_cols = int(height // 3.2), int((z1 - z0) // 3.0)

    def draw() -> None:
        outer = x + side * depth
        s.poly([(x, 0, z0), (outer, 0, z0), (outer, height, z0), (x, height, z0)], BUILDING, color * 0.75 * shade)
        s.poly([(x, 0, z0), (x, 0, z1), (x, height, z1), (x, height, z0)], BUILDING, color * shade)
        # window grid: every window of the facade projected at once and filled in one call
        rows = 1.2 + 3.2 * np.arange(n_rows)
        cols = z0 + 0.9 + 3.0 * np.arange(n_cols)
        cols = cols[s.f / np.maximum(cols, s.z_near) * 1.2 >= 1.5]  # windows under ~2 pixels: skipped
        if len(rows) == 0 or len(cols) == 0:
            return
        y, z = np.meshgrid(rows, cols, indexing="ij")
        y, z = y.ravel(), z.ravel()
        corners = np.stack([np.stack([np.full_like(y, x), yy, zz], 1) for yy, zz in ((y, z), (y, z + 1.3), (y + 1.6, z + 1.3), (y + 1.6, z))], 1)
        pts = s.project(corners.reshape(-1, 3)).reshape(-1, 4, 2)
        cv2.fillPoly(s.photo, list(pts), _color(glass * shade), lineType=cv2.LINE_AA)

    return draw


def _tree(s: _Scene, x: float, z: float) -> Draw:
    rng = s.rng
    trunk_h, radius = rng.uniform(1.5, 3.5), rng.uniform(1.2, 3.0)
    leaf = _surface(rng)
    aspect = rng.uniform(0.8, 1.3)

    def draw() -> None:
        s.box_face(x - 0.15, x + 0.15, 0, trunk_h + radius * 0.5, z, VEGETATION, (80, 60, 40))
        s.ellipse((x, trunk_h + radius * 0.8, z), (radius, radius * aspect), VEGETATION, leaf)

    return draw


def _pole(s: _Scene, x: float, z: float) -> Draw:
    rng = s.rng
    h = rng.uniform(3.5, 7.5)
    kind = rng.choice(("plain", "sign", "light"), p=(0.35, 0.45, 0.2))
    plate = _jitter(rng, [(30, 70, 170), (200, 30, 30), (230, 230, 240), (240, 200, 30)][rng.integers(4)], 10)
    lamp = [(230, 40, 30), (240, 200, 40), (40, 220, 80)][rng.integers(3)]

    def draw() -> None:
        s.box_face(x - 0.08, x + 0.08, 0, h, z, POLE, (110, 110, 115))
        if kind == "sign":
            s.box_face(x - 0.35, x + 0.35, h - 0.9, h - 0.2, z - 0.05, SIGN, plate)
        elif kind == "light":
            s.box_face(x - 0.18, x + 0.18, h - 1.1, h, z - 0.05, LIGHT, (35, 35, 30))
            s.ellipse((x, h - 0.3, z - 0.1), (0.1, 0.1), LIGHT, lamp)

    return draw


def _car(s: _Scene, x: float, z: float) -> Draw:
    rng = s.rng
    color = _jitter(rng, _CARS[rng.integers(len(_CARS))], 12)
    w, length, h = rng.uniform(1.6, 2.0), rng.uniform(3.8, 4.8), rng.uniform(1.35, 1.7)

    def draw() -> None:
        x0, x1 = x - w / 2, x + w / 2
        s.poly([(x0 - 0.2, 0, z - 0.1), (x1 + 0.2, 0, z - 0.1), (x1 + 0.2, 0, z + length), (x0 - 0.2, 0, z + length)], None, (25, 25, 25))
        side_x = x1 if x1 < s.cam_x else (x0 if x0 > s.cam_x else None)
        if side_x is not None:  # the side facing the camera
            s.poly([(side_x, 0.25, z), (side_x, 0.25, z + length), (side_x, h * 0.6, z + length), (side_x, h * 0.6, z)], CAR, color * 0.8)
            s.poly([(side_x, h * 0.6, z + 0.8), (side_x, h * 0.6, z + length - 0.6), (side_x, h, z + length - 1.2), (side_x, h, z + 1.4)], CAR, (40, 45, 55))
        s.box_face(x0, x1, 0.25, h * 0.6, z, CAR, color)
        s.poly([(x0 + 0.15, h * 0.6, z + 0.6), (x1 - 0.15, h * 0.6, z + 0.6), (x1 - 0.3, h, z + 1.2), (x0 + 0.3, h, z + 1.2)], CAR, (45, 50, 60))
        for wx in (x0 + 0.15, x1 - 0.45):
            s.box_face(wx, wx + 0.3, 0.0, 0.4, z - 0.02, CAR, (20, 20, 20))
        s.box_face(x0 + 0.1, x0 + 0.4, h * 0.4, h * 0.5, z - 0.03, CAR, (200, 30, 20))
        s.box_face(x1 - 0.4, x1 - 0.1, h * 0.4, h * 0.5, z - 0.03, CAR, (200, 30, 20))

    return draw


def _person(s: _Scene, x: float, z: float) -> Draw:
    rng = s.rng
    h = rng.uniform(1.55, 1.95)
    shirt, trousers = _jitter(rng, rng.uniform(30, 220, 3), 5), _jitter(rng, (50, 50, 70), 25)
    skin = _jitter(rng, (rng.uniform(90, 225), rng.uniform(70, 180), rng.uniform(50, 150)), 5)

    def draw() -> None:
        s.box_face(x - 0.18, x - 0.02, 0, h * 0.48, z, PERSON, trousers)
        s.box_face(x + 0.02, x + 0.18, 0, h * 0.48, z, PERSON, trousers)
        s.box_face(x - 0.23, x + 0.23, h * 0.46, h * 0.86, z, PERSON, shirt)
        s.ellipse((x, h * 0.93, z), (0.11, 0.13), PERSON, skin)

    return draw


def _objects(s: _Scene) -> list[tuple[float, Draw]]:
    rng, items = s.rng, []
    z_min = s.f * s.cam_h / max(s.size - s.v0, 1.0)  # depth seen at the bottom row
    near = lambda t_max: z_min / rng.uniform(0.04, t_max)  # noqa: E731  inverse depth uniform: denser near
    for _ in range(rng.integers(1, 6)):  # cars: driving in a lane or parked at the kerb
        lane = rng.choice((-1, 1)) * (s.road_w * rng.uniform(0.25, 0.55) if rng.random() < 0.6 else s.road_w - 1.1)
        items.append((z := near(0.6), _car(s, lane, z)))
    for _ in range(rng.integers(1, 9)):  # pedestrians on the sidewalks
        side = rng.choice((-1, 1))
        items.append((z := near(0.9), _person(s, side * (s.road_w + rng.uniform(0.4, max(0.5, s.walk_w - 0.4))), z)))
    for side in (-1, 1):
        spacing = rng.uniform(12, 40)
        z = rng.uniform(1, spacing)
        while z < 150:
            items.append((z, _pole(s, side * (s.road_w + 0.35), z)))
            z += spacing
        if rng.random() < 0.7:
            z = rng.uniform(2, 15)
            spacing = rng.uniform(7, 20)
            while z < 200:
                items.append((z, _tree(s, side * (s.road_w + s.walk_w - rng.uniform(0.4, 1.0)), z)))
                z += spacing * rng.uniform(0.7, 1.3)
    return items


def _texture(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Each pixel's class texture, mostly in [-1, 1]: an (n, n) float32 field for the (n, n) train ids.

    The periods are in pixels, at every image size (2-6: fine enough for a blur to erase them, coarse
    enough to survive a 64 px image), and the phases random per image, so that no generator can know
    where a groove or a brick joint falls: the average over phases, which an L1 objective converges
    to, is flat. Untextured classes (sky, car, person, pole, sign, light) are zero.
    """
    n = labels.shape[0]
    yy, xx = np.mgrid[0:n, 0:n]
    ph = rng.integers(0, 60, (8, 2))  # rows 0-4 used; the spare draws keep the random stream, so the scenes, as measured
    y, x = yy + ph[0, 0], xx + ph[0, 1]
    bricks = np.where((y % 4 == 0) | ((x + 3 * ((y // 4) % 2)) % 6 == 0), -1.0, 0.35)  # a mortar line every 4 rows, joints every 6 px, offset on alternate courses
    y, x = yy + ph[1, 0], xx + ph[1, 1]
    fields = {
        BUILDING: bricks,
        SIDEWALK: np.where((y % 5 == 0) | (x % 5 == 0), -1.0, 0.4),  # paving slabs, joints every 5 px both ways
        ROAD: np.where((xx + yy + ph[2, 0]) % 4 < 2, 1.0, -1.0),  # diagonal grooves, period 4
        TERRAIN: np.where((xx + ph[3, 0]) % 2 == 0, 1.0, -1.0),  # grass blades, alternate columns
        FENCE: np.where((xx + ph[4, 0]) % 3 == 0, -1.0, 0.5),  # slats, a dark gap every 3 columns
        VEGETATION: np.clip(rng.standard_normal((n, n)), -2, 2) * 0.6,  # leaves, per-pixel noise
    }
    texture = np.zeros((n, n), np.float32)
    for cls, pattern in fields.items():
        inside = labels == cls
        texture[inside] = pattern[inside]
    return texture


def _finish_photo(s: _Scene) -> np.ndarray:
    """Textures, lighting and sensor noise over the drawn base colours -> uint8 photo."""
    rng, n = s.rng, s.size
    img = s.photo.astype(np.float32)
    tex = _texture(rng, s.labels)
    g = max(2, n // 8)
    coarse = cv2.resize(rng.standard_normal((g, g)).astype(np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
    img *= (1.0 + tex * _AMP[0][s.labels] + coarse * _AMP[1][s.labels])[:, :, None]
    # lighting: brightness, colour temperature, a sun shading gradient, slight vignetting
    warm = rng.uniform(-0.12, 0.12)
    gain = rng.uniform(0.7, 1.2) * np.array([1 + warm, 1.0, 1 - warm], np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = (np.mgrid[0:n, 0:n].astype(np.float32) / n) - 0.5
    ramp = 1.0 + rng.uniform(0.0, 0.35) * (np.cos(angle) * xx + np.sin(angle) * yy)
    ramp *= 1.0 - rng.uniform(0.0, 0.4) * (xx**2 + yy**2)
    img = img * ramp[:, :, None] * gain
    img += rng.normal(0.0, rng.uniform(0.5, 2.0), img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one random street scene.

    Args:
        rng: the scene's random generator (the same state gives the same scene).
        size: side of the square output in pixels (>= 8).

    Returns:
        ``(photo, train_ids)``: (size, size, 3) uint8 RGB and (size, size) uint8 Cityscapes train ids
        (every pixel one of the 19 classes; nothing is 255).

    Example:
        >>> photo, ids = render_scene(np.random.default_rng(0), 64)
        >>> photo.shape, ids.shape, int(ids.max()) < 19
        ((64, 64, 3), (64, 64), True)
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    s = _Scene(rng, size)
    _layout_ground(s)
    items = _buildings(s) + _objects(s)
    for _z, draw in sorted(items, key=lambda item: -item[0]):  # far to near (painter's algorithm)
        draw()
    return _finish_photo(s), s.labels.copy()


@dataclass(frozen=True)
class SyntheticScenesOptions:
    """Options of :class:`SyntheticScenesBuilder`."""

    count: int = field(default=400, metadata={"range": Range(1), "help": "Total number of scenes (all splits)."})
    val_fraction: float = field(default=0.1, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction of scenes put in val/."})
    test_fraction: float = field(default=0.1, metadata={"range": Range(0, 1, high_open=True), "help": "Fraction of scenes put in test/."})


class SyntheticScenesBuilder(DatasetBuilder):
    """Procedural street scenes: A = colour label map, B = rendered photo (AtoB = labels -> photo)."""

    name = "synthetic-scenes"
    version = "2"  # 2: class textures, a shared surface palette
    summary = "Procedural street scenes in the Cityscapes classes: A = label colours, B = photo (no data needed)."
    source_layout = "none (generated; --count, --size, --seed)"
    Options = SyntheticScenesOptions
    needs_source = False
    takes_source = False  # generated: no --source, --download or --prebuilt
    default_format = "png"

    def plan(self, sources: Sequence[Path], build: BuildOptions) -> Iterator[PairJob]:
        opts: SyntheticScenesOptions = self.options
        if opts.count < 1:
            raise ConfigError(f"--count must be positive, got {opts.count}")
        for flag, value in (("--val-fraction", opts.val_fraction), ("--test-fraction", opts.test_fraction)):
            if not 0 <= value < 1:
                raise ConfigError(f"{flag} must be in [0, 1), got {value}")
        if opts.val_fraction + opts.test_fraction >= 1:
            raise ConfigError("--val-fraction + --test-fraction must leave scenes for train")
        if build.size < 8:
            raise ConfigError(f"--size must be at least 8 for synthetic scenes, got {build.size}")
        n_val, n_test = round(opts.count * opts.val_fraction), round(opts.count * opts.test_fraction)
        order = job_rng(build.seed, "synthetic-scenes", "splits").permutation(opts.count)
        split_of = {}
        for rank, idx in enumerate(order):
            split_of[int(idx)] = "test" if rank < n_test else ("val" if rank < n_test + n_val else "train")
        for i in range(opts.count):
            yield PairJob(split_of[i], f"scene_{i:05d}", (f"synthetic:seed={build.seed}:scene_{i:05d}",), i)

    def make_pair(self, job: PairJob, build: BuildOptions) -> PairResult:
        photo, ids = render_scene(job_rng(build.seed, "synthetic-scenes", job.name), build.size)
        return PairResult(CITYSCAPES.render(ids), photo, extras={"labels": ids})

    def manifest_extras(self) -> dict:
        return {
            "direction": "AtoB",
            "a": "colour label map (Cityscapes train-id colours)",
            "b": "rendered photo",
            "labels": "labels/<split>/<name>.png: Cityscapes train ids (255 = ignore; the exact labels)",
            "class_table": CITYSCAPES.to_dict(),
        }
