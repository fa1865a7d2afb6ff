"""Procedural scenes: categories, drawing, captions."""

from __future__ import annotations

import numpy as np
import pytest

from fmridecode.datasets import scenes
from fmridecode.datasets.scenes import Scene, SceneObject


def test_category_table_has_composable_zero_shot_categories():
    cats = scenes.category_table()
    assert len(cats) == len(scenes.SHAPES) * len(scenes.COLOURS) >= 12
    assert cats["category"].is_unique
    zs = cats[cats["zero_shot"]]
    assert set(zs["category"]) == set(scenes.ZERO_SHOT) and len(zs) >= 4
    seen = cats[~cats["zero_shot"]]
    # every part of a zero-shot category occurs in some seen category
    assert set(zs["shape"]) <= set(seen["shape"])
    assert set(zs["colour"]) <= set(seen["colour"])


def test_sample_scene_respects_categories_and_bounds():
    rng = np.random.default_rng(3)
    allowed = scenes.seen_categories()
    counts = set()
    for _ in range(200):
        sc = scenes.sample_scene(rng, allowed)
        counts.add(len(sc.objects))
        assert sc.background in scenes.BACKGROUNDS
        for o in sc.objects:
            assert (o.shape, o.colour) in allowed
            assert o.category not in scenes.ZERO_SHOT
            assert 0 <= o.x - o.radius and o.x + o.radius <= 1
            assert 0 <= o.y - o.radius and o.y + o.radius <= 1
    assert counts == {1, 2, 3}
    sc = scenes.sample_scene(rng, allowed, required=("star", "red"))
    assert "red star" in scenes.scene_categories(sc)


def _one(shape: str, colour: str = "red", bg: str = "gray") -> Scene:
    return Scene(bg, (SceneObject(shape, colour, 0.5, 0.5, 0.2, 0.0),))


def test_render_draws_the_right_colours_and_shapes():
    img = scenes.render_scene(_one("circle"), 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    red, gray = np.array(scenes.COLOURS["red"]), np.array(scenes.BACKGROUNDS["gray"])
    assert np.abs(img[32, 32].astype(int) - red).max() <= 25  # centre is the object
    assert np.abs(img[2, 2].astype(int) - gray).max() <= 15  # corner is the background
    ring = scenes.render_scene(_one("ring"), 64)
    assert np.abs(ring[32, 32].astype(int) - gray).max() <= 15  # a ring has a hole
    area = {
        s: (np.abs(scenes.render_scene(_one(s), 64).astype(int) - gray).sum(-1) > 60).sum()
        for s in scenes.SHAPES
    }
    assert area["star"] < area["square"] < area["circle"] * 1.05
    assert area["ring"] < area["circle"] and area["triangle"] < area["circle"]
    # same scene + shade seed -> same pixels; other shade seed -> other pixels
    np.testing.assert_array_equal(img, scenes.render_scene(_one("circle"), 64))
    assert not np.array_equal(img, scenes.render_scene(_one("circle"), 64, shade_seed=1))


def test_render_rejects_unknown_category():
    with pytest.raises(ValueError, match="unknown category"):
        scenes.render_scene(_one("hexagon"))


def test_captions_kinds_and_content():
    rng = np.random.default_rng(0)
    colour_words = set(scenes.COLOURS)
    shape_words = set(scenes.SHAPES) | {
        "crosses",
        "circles",
        "squares",
        "triangles",
        "stars",
        "rings",
    }
    for _ in range(100):
        sc = scenes.sample_scene(rng, scenes.all_categories())
        caps = scenes.make_captions(sc, rng)
        assert len(caps) == 5
        kinds = [k for _, k in caps]
        assert kinds.count("detailed") == 2 and kinds.count("colour_shape") == 2
        assert kinds.count("vague") == 1
        for text, kind in caps:
            words = set(text.split())
            if kind == "detailed":
                for o in sc.objects:
                    assert f"{o.colour} {o.shape}" in text
                assert f"{sc.background} background" in text
                assert text.count(" and ") + text.count(", ") >= len(sc.objects) - 1
            elif kind == "colour_shape":
                for cat in scenes.scene_categories(sc):
                    colour, shape = cat.split()
                    assert colour in words and any(w.startswith(shape[:4]) for w in words)
                assert "background" not in text
            else:
                assert not words & colour_words and not words & shape_words
        d1, d2 = caps[0][0], caps[1][0]
        assert d1 != d2  # word order differs between the two detailed captions


def test_size_and_position_words():
    assert scenes.size_word(0.09) == "small" and scenes.size_word(0.21) == "large"
    assert scenes.position_words(0.1, 0.1) == "at the top left"
    assert scenes.position_words(0.5, 0.9) == "at the bottom"
    assert scenes.position_words(0.5, 0.5) == "in the centre"
