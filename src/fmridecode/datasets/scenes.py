"""Procedural stimulus scenes: coloured shapes on a plain background, with captions and labels.

A scene holds 1-3 objects; each object is one *category* (colour x shape, e.g. 'red star') at a
position and size. Scenes are drawn with PIL at ``supersample`` times the final resolution and
downsampled (cheap antialiasing). Captions come in three kinds of decreasing specificity
(``detailed``, ``colour_shape``, ``vague``) so that text targets carry more or less information.

A few categories are ``zero_shot``: the synthetic dataset shows them only in test images. Each
of their shapes and colours still occurs in training images in other combinations, so a model
trained on captions can compose them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
#: object colours (name -> nominal RGB); drawn with a small random shade jitter.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (40, 70, 230),
    "yellow": (235, 215, 30),
}
#: background colours (name -> nominal RGB); none of them is an object colour.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "white": (238, 238, 238),
    "black": (18, 18, 18),
}
#: categories that appear only in test images (each shape and colour once, so every one of
#: their parts is seen in training in other combinations).
ZERO_SHOT: tuple[str, ...] = ("red star", "green ring", "blue triangle", "yellow cross")
#: shape families used by the category-selective ROIs of the simulator.
SHAPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "round": ("circle", "ring"),
    "angular": ("square", "triangle", "star", "cross"),
}
CAPTION_KINDS: tuple[str, ...] = ("detailed", "colour_shape", "vague")
#: radius (fraction of the image width) limits and the words that describe them.
RADIUS_RANGE: tuple[float, float] = (0.08, 0.22)
_PLURAL = {"cross": "crosses"}
_COUNT_WORDS = {2: "two", 3: "three"}
_VAGUE = (
    "some shapes",
    "a colourful picture",
    "a simple drawing",
    "an abstract image",
    "a few objects on a plain background",
    "geometric shapes",
)


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; ``x, y`` = centre and ``radius`` as fractions of the image width."""

    shape: str
    colour: str
    x: float
    y: float
    radius: float
    angle: float  # rotation in degrees (no effect on circles and rings)

    @property
    def category(self) -> str:
        return category_name(self.shape, self.colour)


@dataclass(frozen=True)
class Scene:
    """A whole stimulus: background colour name and its objects (drawing order)."""

    background: str
    objects: tuple[SceneObject, ...]


def category_name(shape: str, colour: str) -> str:
    """Category label, e.g. ``'red star'``."""
    return f"{colour} {shape}"


def all_categories() -> list[tuple[str, str]]:
    """Every (shape, colour) pair, in a fixed order."""
    return [(s, c) for s in SHAPES for c in COLOURS]


def category_table() -> pd.DataFrame:
    """Table ``category, shape, colour, zero_shot`` of all categories."""
    rows = [
        {
            "category": category_name(s, c),
            "shape": s,
            "colour": c,
            "zero_shot": category_name(s, c) in ZERO_SHOT,
        }
        for s, c in all_categories()
    ]
    return pd.DataFrame(rows)


def seen_categories() -> list[tuple[str, str]]:
    """Categories allowed in training and pool images (all but the zero-shot ones)."""
    return [(s, c) for s, c in all_categories() if category_name(s, c) not in ZERO_SHOT]


def sample_scene(
    rng: np.random.Generator,
    categories: Sequence[tuple[str, str]],
    max_objects: int = 3,
    required: tuple[str, str] | None = None,
) -> Scene:
    """Draw a random scene with 1..max_objects objects from ``categories``.

    ``required`` (shape, colour) forces one object of that category. Objects are placed
    inside the image and, as far as 50 tries allow, without heavy overlap.
    """
    if not categories:
        raise ValueError("sample_scene: no categories to draw from")
    n = int(rng.integers(1, max_objects + 1))
    cats = [categories[int(i)] for i in rng.integers(0, len(categories), size=n)]
    if required is not None:
        cats[int(rng.integers(0, n))] = required
    objects: list[SceneObject] = []
    for shape, colour in cats:
        for _ in range(50):
            r = float(rng.uniform(*RADIUS_RANGE))
            x, y = (float(v) for v in rng.uniform(r + 0.02, 1 - r - 0.02, size=2))
            if all(math.hypot(x - o.x, y - o.y) > 0.8 * (r + o.radius) for o in objects):
                break
        angle = float(rng.uniform(-30, 30))
        objects.append(SceneObject(shape, colour, x, y, r, angle))
    background = list(BACKGROUNDS)[int(rng.integers(0, len(BACKGROUNDS)))]
    return Scene(background, tuple(objects))


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> tuple[int, ...]:
    d = rng.integers(-amount, amount + 1, size=3)
    return tuple(int(np.clip(v + dv, 0, 255)) for v, dv in zip(rgb, d, strict=True))


def _polygon(cx: float, cy: float, radii: Sequence[float], angle: float) -> list[tuple]:
    """Vertices at equal angular steps, alternating radii, starting at the top."""
    n = len(radii)
    pts = []
    for k, rad in enumerate(radii):
        a = math.radians(angle) - math.pi / 2 + 2 * math.pi * k / n
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _cross(cx: float, cy: float, r: float, angle: float) -> list[tuple]:
    """Plus-shaped 12-gon with arm half-width 0.33 r, rotated by ``angle``."""
    w = 0.33 * r
    base = [
        (-w, -r),
        (w, -r),
        (w, -w),
        (r, -w),
        (r, w),
        (w, w),
        (w, r),
        (-w, r),
        (-w, w),
        (-r, w),
        (-r, -w),
        (-w, -w),
    ]
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + c * px - s * py, cy + s * px + c * py) for px, py in base]


def render_scene(
    scene: Scene, image_size: int = 64, supersample: int = 4, shade_seed: int = 0
) -> np.ndarray:
    """Draw ``scene`` as uint8 RGB (image_size, image_size, 3).

    Colours get a small shade jitter drawn from ``shade_seed`` (so the same scene and seed
    always give the same pixels).
    """
    if image_size < 8:
        raise ValueError(f"render_scene: image_size {image_size} is too small")
    rng = np.random.default_rng(shade_seed)
    big = image_size * supersample
    img = Image.new("RGB", (big, big), _jitter(BACKGROUNDS[scene.background], rng, 10))
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        if o.shape not in SHAPES or o.colour not in COLOURS:
            raise ValueError(f"render_scene: unknown category {o.category!r}")
        fill = _jitter(COLOURS[o.colour], rng, 20)
        cx, cy, r = o.x * big, o.y * big, o.radius * big
        box = (cx - r, cy - r, cx + r, cy + r)
        if o.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif o.shape == "ring":
            draw.ellipse(box, outline=fill, width=max(1, round(0.38 * r)))
        elif o.shape == "square":
            draw.polygon(_polygon(cx, cy, [r * 0.95] * 4, o.angle + 45), fill=fill)
        elif o.shape == "triangle":
            draw.polygon(_polygon(cx, cy, [r] * 3, o.angle), fill=fill)
        elif o.shape == "star":
            draw.polygon(_polygon(cx, cy, [r, 0.45 * r] * 5, o.angle), fill=fill)
        else:  # cross
            draw.polygon(_cross(cx, cy, r, o.angle), fill=fill)
    img = img.resize((image_size, image_size), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)


def size_word(radius: float, rng: np.random.Generator | None = None) -> str:
    """'small' / 'medium-sized' / 'large' (with a synonym drawn from ``rng`` if given)."""
    lo, hi = RADIUS_RANGE
    third = (hi - lo) / 3
    if radius < lo + third:
        words = ("small", "little")
    elif radius < lo + 2 * third:
        words = ("medium-sized", "mid-sized")
    else:
        words = ("large", "big")
    return words[int(rng.integers(0, 2))] if rng is not None else words[0]


def position_words(x: float, y: float, rng: np.random.Generator | None = None) -> str:
    """Where the object is on a 3x3 grid, e.g. 'at the top left', 'in the centre'."""
    row = "top" if y < 1 / 3 else ("bottom" if y > 2 / 3 else "")
    col = "left" if x < 1 / 3 else ("right" if x > 2 / 3 else "")
    if row and col:
        return f"at the {row} {col}"
    if row:
        return f"at the {row}"
    if col:
        return f"on the {col}"
    centre = ("centre", "middle")[int(rng.integers(0, 2))] if rng is not None else "centre"
    return f"in the {centre}"


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _colour_shape_phrases(scene: Scene, order: Sequence[str]) -> list[str]:
    """'a red star', 'two blue rings', ... for the categories of ``scene`` in ``order``."""
    counts = Counter(o.category for o in scene.objects)
    phrases = []
    for cat in order:
        n = counts[cat]
        colour, shape = cat.split(" ", 1)
        if n == 1:
            phrases.append(f"a {colour} {shape}")
        else:
            phrases.append(f"{_COUNT_WORDS[n]} {colour} {_PLURAL.get(shape, shape + 's')}")
    return phrases


def make_captions(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Five (caption, kind) pairs: 2 detailed, 2 colour_shape, 1 vague.

    Detailed captions name every object as '<size> <colour> <shape> <position>' plus the
    background; colour_shape captions name the categories only; the vague one names nothing.
    Word order and synonyms vary between the two captions of a kind.
    """
    objs = list(scene.objects)
    bg = scene.background
    first = [
        f"a {size_word(o.radius)} {o.colour} {o.shape} {position_words(o.x, o.y)}" for o in objs
    ]
    d1 = f"{_join(first)} on a {bg} background"
    order = [objs[int(i)] for i in rng.permutation(len(objs))]
    second = [
        f"a {size_word(o.radius, rng)} {o.colour} {o.shape} {position_words(o.x, o.y, rng)}"
        for o in order
    ]
    d2 = f"a {bg} background with {_join(second)}"
    cats = list(dict.fromkeys(o.category for o in objs))
    c1 = _join(_colour_shape_phrases(scene, cats))
    shuffled = [cats[int(i)] for i in rng.permutation(len(cats))]
    prefix = ("a picture of ", "an image with ", "a drawing of ")[int(rng.integers(0, 3))]
    c2 = prefix + _join(_colour_shape_phrases(scene, shuffled))
    v = _VAGUE[int(rng.integers(0, len(_VAGUE)))]
    return [
        (d1, "detailed"),
        (d2, "detailed"),
        (c1, "colour_shape"),
        (c2, "colour_shape"),
        (v, "vague"),
    ]


def scene_categories(scene: Scene) -> list[str]:
    """Distinct categories present in ``scene``, in order of first appearance."""
    return list(dict.fromkeys(o.category for o in scene.objects))
