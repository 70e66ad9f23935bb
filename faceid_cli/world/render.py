"""The world's renderer: a person (traits), a context (what prompts control) and a pose (jitter)
drawn into a 64 px portrait, with its ground truth: face box and the five ArcFace landmarks.

Shapes are polygons in head-local coordinates (pixels of the 64 px canvas, origin at the head
centre, y down), moved by the pose (shift, scale, roll, and a yaw that slides the features
sideways), drawn 4x larger with Pillow and box-filtered down, so edges are antialiased. Landmark
coordinates follow the detectors' convention: pixel centres at integers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from .contexts import ATTRIBUTES, Context
from .people import EYE_COLOURS, HAIR_COLOURS, Identity, identity_from_seed

SIZE = 64  # the world's image side
SUPERSAMPLE = 4
BACKGROUNDS = {"green": (92, 170, 96), "blue": (82, 132, 214), "purple": (142, 94, 178), "gray": (150, 150, 154),
               "yellow": (232, 204, 82)}
SHIRTS = {"red": (200, 48, 44), "blue": (44, 70, 180), "green": (40, 140, 60), "white": (238, 238, 232)}
HATS = {"red": (212, 40, 40), "blue": (36, 64, 196), "yellow": (240, 200, 30)}
HEAD_CENTRE = (31.5, 29.0)
assert set(BACKGROUNDS) == set(ATTRIBUTES["background"]) and set(SHIRTS) == set(ATTRIBUTES["shirt"])


@dataclass(frozen=True)
class Pose:
    """Jitter: shift (px), scale, in-plane roll (degrees) and yaw (-1 … 1: features slide sideways)."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    roll: float = 0.0
    yaw: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def random_pose(rng: np.random.Generator, strength: float = 1.0) -> Pose:
    return Pose(dx=float(rng.uniform(-3, 3) * strength), dy=float(rng.uniform(-2.5, 2.5) * strength),
                scale=float(1 + rng.uniform(-0.08, 0.08) * strength), roll=float(rng.uniform(-9, 9) * strength),
                yaw=float(rng.uniform(-1, 1) * strength))


def random_context(rng: np.random.Generator) -> Context:
    return Context(**{name: values[rng.integers(len(values))] for name, values in ATTRIBUTES.items()})


@dataclass
class Rendering:
    image: Image.Image
    identity: Identity
    context: Context
    pose: Pose
    bbox: tuple[float, float, float, float]
    landmarks: np.ndarray  # (5, 2): image-left eye, image-right eye, nose tip, mouth left, mouth right

    def ground_truth(self) -> dict:
        return {
            "identity": self.identity.seed,
            "context": self.context.to_dict(),
            "pose": self.pose.to_dict(),
            "bbox": [round(float(v), 3) for v in self.bbox],
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in self.landmarks],
        }


# ---- geometry ---------------------------------------------------------------------------------
def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, start: float = 0.0,
             end: float = 2 * math.pi) -> np.ndarray:
    t = np.linspace(start, end, n, endpoint=(end - start) < 2 * math.pi - 1e-9)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _face_outline(person: Identity, grow: float = 0.0, n: int = 64) -> np.ndarray:
    a, b = person.face_half_width + grow, person.face_half_height + grow
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    e = 2.0 / person.face_squareness
    c, s = np.cos(t), np.sin(t)
    u = a * np.sign(c) * np.abs(c) ** e
    v = b * np.sign(s) * np.abs(s) ** e
    below = np.clip(v / b, 0, 1)
    u = u * (1 - person.chin_taper * below**2)
    return np.stack([u, v], axis=1)


@functools.cache
def _backdrop(name: str) -> Image.Image:
    """The supersampled background: its colour under a soft light from above."""
    size = SIZE * SUPERSAMPLE
    gradient = np.linspace(1.08, 0.9, size, dtype=np.float32)[:, None, None]
    pixels = np.broadcast_to(np.array(BACKGROUNDS[name], np.float32), (size, size, 3)) * gradient
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class _Canvas:
    """Draws head-local polygons through the pose onto a supersampled image."""

    def __init__(self, backdrop: Image.Image, pose: Pose):
        self.size = SIZE * SUPERSAMPLE
        self.image = backdrop.copy()
        self.draw = ImageDraw.Draw(self.image)
        self.pose = pose
        angle = math.radians(pose.roll)
        self.rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        self.centre = np.array([HEAD_CENTRE[0] + pose.dx, HEAD_CENTRE[1] + pose.dy])

    def to_image(self, points: np.ndarray, depth: float = 0.0) -> np.ndarray:
        """Head-local points → image pixel coordinates (detector convention). ``depth``: how far
        the feature stands out of the face plane, i.e. how much yaw slides it."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
        points[:, 0] += self.pose.yaw * depth
        return self.centre + self.pose.scale * points @ self.rotation.T

    def _ss(self, points: np.ndarray, depth: float) -> list[tuple[float, float]]:
        # detector coordinate x ↔ supersampled pixel centre SUPERSAMPLE * x + (SUPERSAMPLE - 1) / 2
        image_points = self.to_image(points, depth) * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2
        return [tuple(p) for p in image_points]

    def polygon(self, points, fill, depth: float = 0.0, outline=None, width: float = 0.0) -> None:
        self.draw.polygon(self._ss(points, depth), fill=fill, outline=outline,
                          width=max(1, round(width * SUPERSAMPLE)) if outline else 0)

    def line(self, points, fill, width: float, depth: float = 0.0) -> None:
        self.draw.line(self._ss(points, depth), fill=fill, width=max(1, round(width * SUPERSAMPLE * self.pose.scale)),
                       joint="curve")


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(min(255, max(0, int(c * factor))) for c in colour)


# ---- the parts of a portrait ------------------------------------------------------------------
def _draw_body(canvas: _Canvas, person: Identity, context: Context) -> None:
    shirt = SHIRTS[context.shirt]
    b = person.face_half_height
    neck_w = person.face_half_width * 0.45
    canvas.polygon([(-neck_w, b * 0.5), (neck_w, b * 0.5), (neck_w * 1.1, b + 6), (-neck_w * 1.1, b + 6)],
                   _shade(person.skin, 0.86))
    top = b + 3.5
    shoulders = np.array([(-8, top), (8, top), (24, top + 5), (30, top + 30), (-30, top + 30), (-24, top + 5)])
    canvas.polygon(shoulders, shirt, outline=_shade(shirt, 0.7), width=0.5)
    canvas.polygon([(-neck_w * 0.9, top - 0.5), (neck_w * 0.9, top - 0.5), (0, top + 3.5)], _shade(person.skin, 0.86))


def _draw_hair_back(canvas: _Canvas, person: Identity) -> None:
    colour = HAIR_COLOURS[person.hair_colour]
    a, b = person.face_half_width, person.face_half_height
    if person.hair_style == "long":
        canvas.polygon([(-a - 3, -b * 0.3), (a + 3, -b * 0.3), (a + 4.5, b + 7), (-a - 4.5, b + 7)], colour)
    elif person.hair_style == "bob":
        canvas.polygon([(-a - 2.5, -b * 0.3), (a + 2.5, -b * 0.3), (a + 3, b * 0.55), (-a - 3, b * 0.55)], colour)


def _draw_ears(canvas: _Canvas, person: Identity) -> None:
    a = person.face_half_width
    y = person.eye_height + 2.0
    for side in (-1, 1):
        # the far ear (the side the face turns away from) hides behind the head
        visible = 1.0 - 0.6 * max(0.0, side * canvas.pose.yaw)
        rx = person.ear_size * 0.55 * visible
        canvas.polygon(_ellipse(side * (a - 0.3), y, rx, person.ear_size), _shade(person.skin, 0.9), depth=-1.0 * side)


def _draw_face(canvas: _Canvas, person: Identity) -> None:
    canvas.polygon(_face_outline(person), person.skin, outline=_shade(person.skin, 0.78), width=0.4)
    if person.facial_hair == "beard":
        colour = HAIR_COLOURS[person.hair_colour]
        outline = _face_outline(person, grow=0.6)
        lower = outline[outline[:, 1] > person.face_half_height * 0.25]
        lower = lower[np.argsort(np.arctan2(lower[:, 1], lower[:, 0]))]
        mouth_y = person.face_half_height * 0.55
        inner = _ellipse(0, mouth_y + 0.5, person.mouth_width * 0.75, 2.5, n=12, start=math.pi, end=0)
        canvas.polygon(np.concatenate([lower[::-1], inner[::-1]]), colour, depth=0.5)
    elif person.facial_hair == "stubble":
        outline = _face_outline(person, grow=-0.3)
        lower = outline[outline[:, 1] > person.face_half_height * 0.3]
        lower = lower[np.argsort(np.arctan2(lower[:, 1], lower[:, 0]))]
        canvas.polygon(lower, _shade(person.skin, 0.72), depth=0.5)


def _draw_hair_front(canvas: _Canvas, person: Identity) -> None:
    style = person.hair_style
    if style == "bald":
        return
    colour = HAIR_COLOURS[person.hair_colour]
    a, b = person.face_half_width, person.face_half_height
    grow = {"buzz": 0.6, "short": 2.0, "side-part": 2.2, "long": 2.2, "bob": 2.4, "curly": 2.6, "bun": 1.6}[style]
    outline = _face_outline(person, grow=grow)
    limit = {"buzz": -0.45, "short": -0.4, "side-part": -0.4, "long": -0.35, "bob": -0.25, "curly": -0.35,
             "bun": -0.45}[style] * b
    cap = outline[outline[:, 1] < limit]
    cap = cap[np.argsort(np.arctan2(cap[:, 1], cap[:, 0]))]
    fringe_y = limit
    if style == "side-part":
        fringe = [(a * 0.9, fringe_y), (-a * 0.2, fringe_y + 2.5), (-a * 0.95, fringe_y + 4.0)]
        canvas.polygon(np.concatenate([cap, fringe]), colour, depth=0.3)
    elif style == "bob":
        fringe = [(a * 0.95, fringe_y + 1.0), (-a * 0.95, fringe_y + 1.0)]
        canvas.polygon(np.concatenate([cap, fringe]), colour, depth=0.3)
    else:
        canvas.polygon(np.concatenate([cap, [(a * 0.7, limit + 0.8), (-a * 0.7, limit + 0.8)]]), colour, depth=0.3)
    if style in ("short", "side-part", "curly", "buzz", "bun"):
        # sideburns: hair that shows beside the temples even under a hat
        width = 1.2 if style == "buzz" else 2.0
        for side in (-1, 1):
            x = side * (a - 0.2)
            canvas.polygon([(x - side * width, limit - 1), (x + side * 0.9, limit - 1), (x + side * 0.6, person.eye_height + 1.5),
                            (x - side * width * 0.6, person.eye_height + 1.0)], colour, depth=0.3)
    if style == "curly":
        for angle in np.linspace(math.pi * 1.05, math.pi * 1.95, 7):
            cx, cy = (a + 2.2) * math.cos(angle), (b + 2.2) * math.sin(angle)
            canvas.polygon(_ellipse(cx, cy, 2.6, 2.6, n=12), colour, depth=0.3)
    if style == "bun":
        canvas.polygon(_ellipse(0, -b - 3.0, 3.6, 3.0, n=16), colour, depth=0.3)


def _draw_eyes(canvas: _Canvas, person: Identity, glasses: str) -> list[np.ndarray]:
    centres = []
    iris = EYE_COLOURS[person.eye_colour]
    rx = person.eye_width / 2
    ry = max(0.7, rx * person.eye_aspect)
    for side in (-1, 1):
        cx, cy = side * person.eye_spacing, person.eye_height
        canvas.polygon(_ellipse(cx, cy, rx, ry, n=20), (246, 244, 240), depth=2.0,
                       outline=_shade(person.skin, 0.5), width=0.3)
        r = min(rx, ry) * 0.95
        canvas.polygon(_ellipse(cx, cy, r, r, n=16), iris, depth=2.0)
        canvas.polygon(_ellipse(cx, cy, r * 0.45, r * 0.45, n=10), (12, 10, 10), depth=2.0)
        centres.append(canvas.to_image((cx, cy), depth=2.0)[0])
        # brows
        by = cy - ry - 1.6
        tilt = math.tan(math.radians(person.brow_angle)) * rx * 1.2
        brow = [(cx - side * rx * 1.2, by + tilt * 0.5), (cx + side * rx * 1.3, by - tilt * 0.5)]
        canvas.line(brow, _shade(HAIR_COLOURS[person.hair_colour], 0.75), person.brow_thickness, depth=2.0)
    return centres


def _draw_nose(canvas: _Canvas, person: Identity) -> np.ndarray:
    top = person.eye_height + 1.0
    tip_y = top + person.nose_length
    w = person.nose_width / 2
    shade = _shade(person.skin, 0.72)
    if person.nose_style == "point":
        canvas.line([(0.4, top), (w * 0.6, tip_y - 0.3), (0, tip_y), (-w * 0.6, tip_y - 0.2)], shade, 0.5, depth=3.5)
    elif person.nose_style == "round":
        canvas.polygon(_ellipse(0, tip_y - 0.8, w * 0.7, 1.1, n=12), _shade(person.skin, 0.86), depth=3.5)
        canvas.line([(-w, tip_y - 0.4), (0, tip_y), (w, tip_y - 0.4)], shade, 0.5, depth=3.5)
    else:  # wide
        canvas.polygon([(0, top + 1), (w, tip_y), (-w, tip_y)], _shade(person.skin, 0.84), depth=3.5)
        canvas.line([(-w, tip_y), (w, tip_y)], shade, 0.6, depth=3.5)
    return canvas.to_image((0.0, tip_y), depth=3.5)[0]


def _draw_mouth(canvas: _Canvas, person: Identity) -> tuple[np.ndarray, np.ndarray]:
    y = person.eye_height + person.nose_length + 4.2
    y = min(y, person.face_half_height * 0.72)
    w = person.mouth_width / 2
    lift = person.smile
    t = person.lip_thickness
    upper = [(-w, y - lift), (-w * 0.4, y - t * 0.6), (0, y - t * 0.4), (w * 0.4, y - t * 0.6), (w, y - lift)]
    lower = [(w * 0.5, y + t - lift * 0.2), (0, y + t * 1.1), (-w * 0.5, y + t - lift * 0.2)]
    canvas.polygon(upper + lower, person.lip_colour, depth=2.2)
    canvas.line([(-w, y - lift), (0, y + 0.2 * t), (w, y - lift)], _shade(person.lip_colour, 0.6), 0.35, depth=2.2)
    if person.facial_hair == "moustache":
        colour = HAIR_COLOURS[person.hair_colour]
        canvas.polygon([(-w * 1.05, y - 0.6), (0, y - t - 1.6), (w * 1.05, y - 0.6), (0, y - t * 0.5)], colour,
                       depth=2.6)
    left = canvas.to_image((-w, y - lift), depth=2.2)[0]
    right = canvas.to_image((w, y - lift), depth=2.2)[0]
    return left, right


def _draw_mole(canvas: _Canvas, person: Identity) -> None:
    if person.mole is not None:
        u, v = person.mole
        canvas.polygon(_ellipse(u * person.face_half_width, v * person.face_half_height, 0.7, 0.7, n=8),
                       _shade(person.skin, 0.45), depth=1.5)


def _draw_glasses(canvas: _Canvas, person: Identity, kind: str) -> None:
    if kind == "none":
        return
    r = person.eye_width / 2 + 1.1
    y = person.eye_height
    frame = (24, 22, 22)
    for side in (-1, 1):
        cx = side * person.eye_spacing
        ring = _ellipse(cx, y, r, r * 0.85, n=20)
        if kind == "sunglasses":
            canvas.polygon(ring, (20, 20, 26), depth=2.4, outline=frame, width=0.5)
        else:
            # frames thick enough to survive a 64 px picture
            canvas.line(np.concatenate([ring, ring[:1]]), frame, 0.9, depth=2.4)
        canvas.line([(cx + side * r, y - 0.4), (side * (person.face_half_width + 0.3), y + 0.2)], frame, 0.7,
                    depth=1.0)
    canvas.line([(-person.eye_spacing + r, y - 0.3), (person.eye_spacing - r, y - 0.3)], frame, 0.9, depth=2.6)


def _draw_hat(canvas: _Canvas, person: Identity, hat: str) -> None:
    if hat == "none":
        return
    colour = HATS[hat]
    a, b = person.face_half_width, person.face_half_height
    brim_y = person.eye_height - 5.2
    crown = _ellipse(0, brim_y, a + 1.8, brim_y + b + 6.5, n=24, start=math.pi, end=2 * math.pi)
    canvas.polygon(np.concatenate([crown, [(a + 1.8, brim_y)]]), colour, depth=0.2, outline=_shade(colour, 0.55),
                   width=0.5)
    canvas.polygon([(-a - 4.5, brim_y - 1.0), (a + 4.5, brim_y - 1.0), (a + 4.0, brim_y + 1.4), (-a - 4.0, brim_y + 1.4)],
                   _shade(colour, 0.72), depth=0.2)
    canvas.line([(-a - 0.5, brim_y - 3.2), (a + 0.5, brim_y - 3.2)], _shade(colour, 0.5), 1.2, depth=0.2)


# ---- styles -----------------------------------------------------------------------------------
def _pencil_sketch(image: Image.Image) -> Image.Image:
    """Coloured pencil on white paper: dark strokes along edges over a pale wash of the colours
    (so colours, and the attributes they carry, can still be read)."""
    pixels = np.asarray(image, dtype=np.float32)
    grey = pixels.mean(axis=2)
    wash = 255 - (255 - (0.7 * pixels + 0.3 * grey[..., None])) * 0.65
    edges = np.asarray(image.convert("L").filter(ImageFilter.FIND_EDGES), dtype=np.float32).copy()
    edges[[0, -1], :] = 0  # the filter draws a frame at the border: not an edge of the picture
    edges[:, [0, -1]] = 0
    stroke = np.clip((edges - 10.0) / 40.0, 0, 1)[..., None]  # below 10: the backdrop's gradient
    # dark tones are shaded in, as a pencil does: without it, sunglasses' dark lenses washed out to
    # the grey of clear lenses and the context classifier confused the two in sketches (0.91)
    shade = np.clip((90.0 - grey) / 60.0, 0, 1)[..., None]
    pencil = np.array([40, 38, 44], np.float32)
    out = wash * (1 - 0.7 * shade) + pencil * 0.7 * shade
    out = out * (1 - 0.8 * stroke) + pencil * 0.8 * stroke
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _oil_painting(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Few, saturated colours with diagonal brush streaks."""
    image = ImageEnhance.Color(ImageOps.posterize(image.filter(ImageFilter.SMOOTH_MORE), 3)).enhance(1.6)
    strokes = rng.normal(0, 1, (SIZE + 3, SIZE + 3)).astype(np.float32)
    strokes = sum(strokes[i:i + SIZE, i:i + SIZE] for i in range(4)) / 2  # diagonal streaks
    pixels = np.asarray(image, dtype=np.float32) * (1 + 0.045 * strokes[..., None])
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


# ---- the whole portrait -----------------------------------------------------------------------
def render(person: Identity | int, context: Context, pose: Pose = Pose(), noise_seed: int = 0) -> Rendering:
    """Draw ``person`` (an Identity or its seed) in ``context`` and ``pose``.

    ``noise_seed`` drives the per-image texture (the oil-painting strokes); everything else is
    fixed by the three arguments.
    """
    if not isinstance(person, Identity):
        person = identity_from_seed(int(person))
    canvas = _Canvas(_backdrop(context.background), pose)
    _draw_hair_back(canvas, person)
    _draw_body(canvas, person, context)
    _draw_ears(canvas, person)
    _draw_face(canvas, person)
    _draw_hair_front(canvas, person)
    eyes = _draw_eyes(canvas, person, context.glasses)
    nose = _draw_nose(canvas, person)
    mouth_left, mouth_right = _draw_mouth(canvas, person)
    _draw_mole(canvas, person)
    _draw_glasses(canvas, person, context.glasses)
    _draw_hat(canvas, person, context.hat)
    image = canvas.image.reduce(SUPERSAMPLE)
    if context.style == "pencil sketch":
        image = _pencil_sketch(image)
    elif context.style == "oil painting":
        image = _oil_painting(image, np.random.default_rng(noise_seed))
    outline = canvas.to_image(_face_outline(person))
    bbox = (float(outline[:, 0].min()), float(outline[:, 1].min()), float(outline[:, 0].max()),
            float(outline[:, 1].max()))
    eyes = sorted(eyes, key=lambda p: p[0])  # image-left eye first
    mouth = sorted([mouth_left, mouth_right], key=lambda p: p[0])
    landmarks = np.array([eyes[0], eyes[1], nose, mouth[0], mouth[1]], dtype=np.float64)
    return Rendering(image, person, context, pose, bbox, landmarks)


def render_sample(person: Identity | int, image_seed: int, context: Context | None = None,
                  pose_strength: float = 1.0) -> Rendering:
    """A random image of ``person``: context (unless given), pose and texture from ``image_seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([0x1A, int(image_seed)]))
    drawn_context = random_context(rng)
    pose = random_pose(rng, pose_strength)
    return render(person, context or drawn_context, pose, noise_seed=int(rng.integers(2**31)))


NEGATIVE_KINDS = ("backdrop", "body", "noise", "scrambled")


def render_negative(image_seed: int) -> Image.Image:
    """A 64 px picture with no face in it, for teaching the detector to say "no face": an empty
    backdrop, shoulders without a head, noise, or a portrait cut in tiles and shuffled."""
    rng = np.random.default_rng(np.random.SeedSequence([0xE6, int(image_seed)]))
    kind = NEGATIVE_KINDS[rng.integers(len(NEGATIVE_KINDS))]
    context = random_context(rng)
    if kind == "noise":
        scale = int(rng.choice([1, 2, 4, 8]))
        noise = rng.integers(0, 256, (SIZE // scale, SIZE // scale, 3), dtype=np.uint8)
        return Image.fromarray(noise).resize((SIZE, SIZE), Image.Resampling.NEAREST if scale == 1 else Image.Resampling.BILINEAR)
    if kind == "scrambled":
        portrait = np.asarray(render(int(rng.integers(2**31)), context, random_pose(rng)).image)
        tile = int(rng.choice([8, 16]))
        tiles = [portrait[y:y + tile, x:x + tile] for y in range(0, SIZE, tile) for x in range(0, SIZE, tile)]
        order = rng.permutation(len(tiles))
        per_row = SIZE // tile
        rows = [np.concatenate([tiles[i] for i in order[r * per_row:(r + 1) * per_row]], axis=1) for r in range(per_row)]
        return Image.fromarray(np.concatenate(rows, axis=0))
    canvas = _Canvas(_backdrop(context.background), random_pose(rng))
    if kind == "body":
        person = identity_from_seed(int(rng.integers(2**31)))
        _draw_body(canvas, person, context)
    image = canvas.image.reduce(SUPERSAMPLE)
    if context.style == "pencil sketch":
        image = _pencil_sketch(image)
    elif context.style == "oil painting":
        image = _oil_painting(image, rng)
    return image
