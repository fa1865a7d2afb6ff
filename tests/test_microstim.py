"""Microstimulation (Mind Reader 3.3): setting an ROI's voxels moves the decoded embedding; on
the synthetic dataset, boosting a category-selective (floc) ROI moves it toward the categories
that ROI is tuned to."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_encoding import simulate, stand_in_embeddings, voxel_matrix

from fmridecode.datasets import scenes
from fmridecode.datasets import synthetic as syn
from fmridecode.io import DataError
from fmridecode.mappers.ridge import RidgeCV
from fmridecode.mappers.targets import align
from fmridecode.metrics.encoding import roi_columns
from fmridecode.metrics.microstim import (
    class_cosines,
    expand_rois,
    family_shift,
    generate_conditions,
    manipulation_values,
    microstim_grid,
    microstim_rows,
    microstim_shifts,
    shift_figure,
    stimulate,
)
from fmridecode.metrics.table import validate

PNG = b"\x89PNG\r\n\x1a\n"


def test_stimulate_sets_only_the_roi_columns():
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = stimulate(X, np.array([False, True, False, True]), 10.0)
    np.testing.assert_array_equal(out[:, [1, 3]], 10.0)
    np.testing.assert_array_equal(out[:, [0, 2]], X[:, [0, 2]])
    assert X[0, 1] == 1  # the input is not changed


def test_manipulations_and_roi_expansion():
    assert manipulation_values(["boost", "silence"], 7.5) == {"boost": 7.5, "silence": 0.0}
    with pytest.raises(DataError, match="unknown manipulations"):
        manipulation_values(["zap"], 1.0)
    avail = ["nsdgeneral", "early", "mid", "high", "floc-round", "floc-warm"]
    assert expand_rois(["early", "floc", "floc-warm"], avail) == [
        "early",
        "floc-round",
        "floc-warm",
    ]
    assert expand_rois(["floc-faces"], avail) == ["floc-faces"]  # unavailable rows later


def test_shift_of_a_linear_decoder_points_along_the_roi_weights():
    """With a linear decoder the boost adds value x (sum of the ROI's weight rows): the class
    along that direction gains cosine, the opposite class loses it, by the hand-computed
    amount."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 3))
    X = rng.normal(size=(5, 6)).astype(np.float32)
    roi = np.array([1, 1, 0, 0, 0, 0], bool)
    direction = W[:2].sum(axis=0)
    classes = np.stack([direction, -direction, rng.normal(size=3)])
    shifts, base, stim = microstim_shifts(
        lambda x: x @ W, X, {"a": roi, "empty": np.zeros(6, bool)}, {"boost": 50.0},
        classes, ["toward", "away", "other"],
    )  # fmt: skip
    assert set(shifts["roi"]) == {"a"}  # an empty ROI is skipped
    s = shifts.set_index("category")["shift"]
    assert s["toward"] > 0.3 and s["away"] < -0.3
    expected = (class_cosines(stim[("a", "boost")], classes) - class_cosines(base, classes)).mean(0)
    np.testing.assert_allclose(s.to_numpy(), expected)
    # silencing columns that are already 0 changes nothing
    X0 = X.copy()
    X0[:, roi] = 0
    quiet, _, _ = microstim_shifts(
        lambda x: x @ W, X0, {"a": roi}, {"silence": 0.0}, classes, "tao"
    )
    np.testing.assert_allclose(quiet["shift"], 0.0, atol=1e-12)


def test_metric_rows_top_category_and_unavailable_roi():
    shifts = pd.DataFrame(
        {
            "roi": ["a"] * 3,
            "manipulation": ["boost"] * 3,
            "category": ["x", "y", "z"],
            "shift": [0.1, 0.4, -0.2],
            "baseline_cosine": [0.0, 0.0, 0.0],
        }
    )
    base = {"dataset": "d", "subject": "01", "mapper": "ridge"}
    rows = microstim_rows(shifts, base, ["a", "b"], ["boost"], {"a": 3}, 24)
    df = validate(pd.DataFrame(rows))
    top = df[df["metric"] == "microstim_top_shift"].set_index("roi")
    assert top.loc["a", "category"] == "y" and top.loc["a", "value"] == pytest.approx(0.4)
    assert top.loc["a", "n"] == 3
    assert top.loc["b", "status"].startswith("unavailable") and np.isnan(top.loc["b", "value"])
    assert len(df[(df["metric"] == "microstim_shift") & (df["roi"] == "a")]) == 3
    assert set(df["manipulation"]) == {"boost"}


def test_figures_and_generation_from_conditions(tmp_path):
    """The grid of images generated through the tiny generator's sampler: identical
    embeddings in two conditions give identical images (same seeded noise per row)."""
    from fmridecode.generators.pipeline import (
        EmbeddingDiffusionPipeline,
        EmbeddingProjection,
        build_scheduler,
        build_unet,
    )
    from fmridecode.generators.tiny_diffusion import load_generator

    dim = 8
    pipe = EmbeddingDiffusionPipeline(
        unet=build_unet(8, 32, channels=(8, 16), layers_per_block=1),
        scheduler=build_scheduler(),
        projection=EmbeddingProjection(dim, 32, hidden_dim=16),
    )
    pipe.save_pretrained(tmp_path / "gen")
    pipe = load_generator(tmp_path / "gen", "cpu")
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, dim)).astype(np.float32)
    conditions = {"baseline": base, "same": base.copy(), "moved": base + 5.0}
    settings = {"steps": 3, "guidance": 2.0, "seed": 0, "out_size": 16}
    out = generate_conditions(pipe, conditions, **settings)
    assert out["baseline"].shape == (3, 16, 16, 3) and out["baseline"].dtype == np.uint8
    np.testing.assert_array_equal(out["baseline"], out["same"])
    with pytest.raises(DataError):
        generate_conditions(pipe, {"a": base, "b": base[:2]}, **settings)
    stimuli = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    microstim_grid(stimuli, out, ["i0", "i1", "i2"], tmp_path / "grid.png", "grid")
    assert (tmp_path / "grid.png").read_bytes()[:8] == PNG
    shifts = pd.DataFrame(
        {
            "roi": ["a", "a", "b", "b"],
            "manipulation": ["boost"] * 4,
            "category": ["x", "y"] * 2,
            "shift": [0.1, -0.1, 0.0, 0.3],
            "baseline_cosine": 0.0,
        }
    )
    shift_figure(shifts, tmp_path / "shifts.png", "shifts")
    assert (tmp_path / "shifts.png").read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """A ridge decoder (voxels -> stand-in embeddings) of a tiny synthetic subject, its test
    rows, the ROI columns and the class embeddings."""
    root = simulate(tmp_path_factory.mktemp("stim"))
    X, vindex, _, _, _ = voxel_matrix(root)
    emb, ids, class_emb, classes = stand_in_embeddings(root)
    Y = align(emb, ids, list(vindex["stim_id"]), "embeddings")
    train = (vindex["split"] == "train").to_numpy()
    model = RidgeCV([1.0, 10.0, 100.0, 1e3, 1e4, 1e5], cv=5).fit(X[train], Y[train])
    cols = roi_columns(root / "bids", "01", "nsdgeneral")
    return model, X[~train], cols, class_emb, classes


#: the simulator's category-selective ROIs and the categories each is tuned to (its floc
#: labels prefer a shape family or the warm colours, each shared by several categories)
FAMILIES = {
    "floc-round": lambda c: c.split()[1] in scenes.SHAPE_FAMILIES["round"],
    "floc-angular": lambda c: c.split()[1] in scenes.SHAPE_FAMILIES["angular"],
    "floc-warm": lambda c: c.split()[0] in syn.WARM_COLOURS,
}


@pytest.mark.parametrize("roi", sorted(FAMILIES))
def test_boosting_a_selective_roi_moves_toward_its_categories(decoded, roi):
    model, X_test, cols, class_emb, classes = decoded
    values = manipulation_values(["boost", "silence"], 10.0)
    shifts, _, _ = microstim_shifts(
        model.predict, X_test, {roi: cols[roi]}, values, class_emb, classes
    )
    members = [c for c in classes if FAMILIES[roi](c)]
    inside, outside = family_shift(shifts, roi, "boost", members)
    assert inside > outside + 0.05, (inside, outside)
    boost = shifts[shifts["manipulation"] == "boost"]
    top = boost.loc[boost["shift"].idxmax(), "category"]
    assert FAMILIES[roi](top), top
    # silencing moves far less than boosting to 10 SD
    silence = shifts[shifts["manipulation"] == "silence"]["shift"].abs().max()
    assert silence < boost["shift"].abs().max()


def test_boosting_early_cortex_is_not_category_selective(decoded):
    """Control: early cortex is retinotopic, not tuned to shape families; boosting it moves
    the embedding toward round and angular categories alike (far less apart than floc-round)."""
    model, X_test, cols, class_emb, classes = decoded
    shifts, _, _ = microstim_shifts(
        model.predict, X_test, {r: cols[r] for r in ("early", "floc-round")}, {"boost": 10.0},
        class_emb, classes,
    )  # fmt: skip
    round_ = [c for c in classes if FAMILIES["floc-round"](c)]
    gap = {
        r: np.subtract(*family_shift(shifts, r, "boost", round_)) for r in ("early", "floc-round")
    }
    assert abs(gap["early"]) < gap["floc-round"] / 2, gap


def test_shift_needs_matching_widths():
    with pytest.raises(DataError):
        class_cosines(np.zeros((2, 3)), np.zeros((4, 5)))
    with pytest.raises(DataError, match="columns"):
        microstim_shifts(lambda x: x, np.zeros((2, 3)), {"a": np.ones(4, bool)}, {"boost": 1.0},
                         np.eye(3), ["a", "b", "c"])  # fmt: skip
