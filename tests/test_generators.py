"""Tests for the tiny diffusion generator: training, save/load round trip, sampling, grid."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # loading a local pipeline folder must never need the network

import json

import numpy as np
import pytest
import torch
from devices import needs_cuda
from PIL import Image

from fmridecode.generators import (
    EmbeddingDiffusionPipeline,
    grid_size,
    load_generator,
    reconstruct,
    save_grid,
    train_generator,
)
from fmridecode.generators.tiny_diffusion import LABEL, PAD, TILE
from fmridecode.io import DataError

COLOURS = np.array([[230, 30, 30], [30, 30, 230], [30, 200, 30], [230, 230, 30]], np.uint8)
RED, BLUE = 0, 1


def _solid_colour_data(n: int = 256, size: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solid-colour squares; each colour has its own random (unnormalised) embedding."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((len(COLOURS), 16)).astype(np.float32)
    label = np.arange(n) % len(COLOURS)
    images = np.broadcast_to(COLOURS[label][:, None, None, :], (n, size, size, 3)).copy()
    return images, emb[label], emb


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    images, embeds, colour_emb = _solid_colour_data()
    out = tmp_path_factory.mktemp("gen") / "tiny"
    stats = train_generator(
        images, embeds, out, image_size=16, epochs=12, batch_size=16, lr=3e-3, seed=0,
        channels=(16, 32), ema_decay=0.99,
    )  # fmt: skip
    return out, stats, colour_emb


def test_training_lowers_loss_and_saves_pipeline(trained):
    out, stats, _ = trained
    losses = stats["loss_per_epoch"]
    assert stats["stopped_by"] == "epochs" and stats["epochs_run"] == 12
    assert stats["steps"] == 12 * 16 == len(stats["loss_per_step"])
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    for part in ("model_index.json", "unet", "scheduler", "projection"):
        assert (out / part).exists()
    assert json.loads((out / "training.json").read_text())["steps"] == stats["steps"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_samples_follow_the_condition(trained):
    out, _, colour_emb = trained
    pipe = load_generator(out)
    cond = np.repeat(colour_emb[[RED, BLUE]], 3, axis=0)
    imgs = reconstruct(pipe, cond, steps=15, guidance=3.0, seed=0).astype(float)
    assert imgs.shape == (6, 16, 16, 3)
    rgb = imgs.reshape(2, 3, -1, 3).mean(axis=(1, 2))  # mean colour of the red / blue samples
    red_minus_blue = rgb[:, 0] - rgb[:, 2]
    assert red_minus_blue[0] > 60  # the 'red' samples are red ...
    assert red_minus_blue[0] - red_minus_blue[1] > 80  # ... and redder than the 'blue' ones
    # guidance 0 is the unconditional model: it must not depend on the embedding
    unc = reconstruct(pipe, colour_emb[[RED, BLUE]], steps=5, guidance=0.0, seed=0)
    unc2 = reconstruct(pipe, colour_emb[[BLUE, BLUE]], steps=5, guidance=0.0, seed=0)
    np.testing.assert_array_equal(unc, unc2)


def test_save_load_round_trip_gives_identical_samples(trained, tmp_path):
    out, _, colour_emb = trained
    pipe = load_generator(out)
    pipe.save_pretrained(tmp_path / "copy")
    again = EmbeddingDiffusionPipeline.from_pretrained(tmp_path / "copy")
    a = reconstruct(pipe, colour_emb, steps=8, guidance=2.0, seed=3)
    b = reconstruct(again, colour_emb, steps=8, guidance=2.0, seed=3)
    assert a.dtype == np.uint8 and a.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(a, b)
    for name, p in pipe.unet.state_dict().items():
        torch.testing.assert_close(p, again.unet.state_dict()[name], rtol=0, atol=0)


def test_sampling_is_deterministic_and_batch_independent(trained):
    out, _, colour_emb = trained
    pipe = load_generator(out)
    a = reconstruct(pipe, colour_emb, steps=6, guidance=3.0, seed=7)
    b = reconstruct(pipe, colour_emb, steps=6, guidance=3.0, seed=7, batch_size=3)
    c = reconstruct(pipe, colour_emb, steps=6, guidance=3.0, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    big = reconstruct(pipe, colour_emb[:2], steps=6, guidance=3.0, seed=7, out_size=40)
    assert big.shape == (2, 40, 40, 3) and big.dtype == np.uint8


@needs_cuda
def test_cuda_sampling_gives_the_cpu_images(trained):
    """The tiny generator on CUDA (noise from each row's CPU generator) samples the CPU's
    images up to float rounding, init images and batching included."""
    out, _, colour_emb = trained
    cpu, gpu = load_generator(out), load_generator(out, device="cuda")
    assert gpu.device.type == "cuda"
    kw = dict(steps=6, guidance=3.0, seed=7)
    a = reconstruct(cpu, colour_emb, **kw)
    b = reconstruct(gpu, colour_emb, batch_size=3, **kw)
    assert np.abs(a.astype(int) - b).mean() < 1
    init = np.roll(a, 1, axis=0)
    a2 = reconstruct(cpu, colour_emb, init_images=init, strength=0.5, **kw)
    b2 = reconstruct(gpu, colour_emb, init_images=init, strength=0.5, **kw)
    assert np.abs(a2.astype(int) - b2).mean() < 1


def test_rows_of_a_call_equal_a_call_on_those_rows(trained):
    """What a resumed run relies on: rows a:b made alone (first_row=a) are the full run's rows,
    from noise and from init images (two-stage)."""
    out, _, colour_emb = trained
    pipe = load_generator(out)
    kw = dict(steps=6, guidance=3.0, seed=7)
    full = reconstruct(pipe, colour_emb, **kw)
    part = reconstruct(pipe, colour_emb[2:5], first_row=2, **kw)
    np.testing.assert_array_equal(part, full[2:5])
    assert not np.array_equal(reconstruct(pipe, colour_emb[2:5], **kw), full[2:5])
    init = np.random.default_rng(0).integers(0, 256, (len(colour_emb), 16, 16, 3), np.uint8)
    full = reconstruct(pipe, colour_emb, init_images=init, strength=0.5, **kw)
    part = reconstruct(pipe, colour_emb[3:], init_images=init[3:], strength=0.5, first_row=3, **kw)
    np.testing.assert_array_equal(part, full[3:])


def test_time_limit_stops_training_and_replaces_old_output(tmp_path):
    images, embeds, _ = _solid_colour_data(n=32, size=8)
    out = tmp_path / "gen"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    stats = train_generator(
        images, embeds, out, image_size=8, epochs=50, max_minutes=1e-6, batch_size=8,
        lr=1e-3, seed=0, channels=(8, 16),
    )  # fmt: skip
    assert stats["stopped_by"] == "max_minutes"
    assert stats["steps"] == 1 and stats["epochs_run"] == 1
    assert not (out / "stale.txt").exists()
    assert load_generator(out).unet.config.sample_size == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen"]


def test_bad_inputs_raise_data_error(tmp_path):
    images, embeds, _ = _solid_colour_data(n=8, size=8)
    with pytest.raises(DataError, match="images.npy: 8 images but 7 embedding rows"):
        train_generator(images, embeds[:7], tmp_path / "g", epochs=1, source="images.npy")
    with pytest.raises(DataError, match="uint8"):
        train_generator(images.astype(np.float32), embeds, tmp_path / "g", epochs=1)
    bad = embeds.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        train_generator(images, bad, tmp_path / "g", epochs=1)
    with pytest.raises(DataError, match="no model_index.json"):
        load_generator(tmp_path)
    assert not (tmp_path / "g").exists()


def test_save_grid_layout_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    stim_cols = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    rec_cols = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    stimuli = np.broadcast_to(stim_cols[:, None, None], (5, 64, 64, 3)).copy()
    recons = np.broadcast_to(rec_cols[:, None, None], (5, 32, 32, 3)).copy()
    path = tmp_path / "grid.png"
    save_grid(stimuli, recons, path, ids=[f"img{i:05d}" for i in range(5)])
    img = np.asarray(Image.open(path).convert("RGB"))
    # 5 pairs -> 4 pairs on the first row, 1 on the second
    expected = (4 * (2 * TILE + PAD) + PAD, 2 * (LABEL + TILE + PAD) + PAD)
    assert (img.shape[1], img.shape[0]) == grid_size(5) == expected
    for k in range(5):
        r, c = divmod(k, 4)
        x, y = PAD + c * (2 * TILE + PAD), PAD + r * (LABEL + TILE + PAD) + LABEL
        np.testing.assert_array_equal(img[y + TILE // 2, x + TILE // 2], stim_cols[k])
        np.testing.assert_array_equal(img[y + TILE // 2, x + TILE + TILE // 2], rec_cols[k])
        assert (img[y - LABEL : y, x : x + TILE] < 128).any()  # the id label is drawn
    save_grid(stimuli, recons, path, n_max=2)
    assert Image.open(path).size == grid_size(2)
    with pytest.raises(DataError, match="grid.png"):
        save_grid(stimuli, recons[:3], path)


def test_save_pngs_round_trip_and_bad_ids(tmp_path):
    from fmridecode.generators import save_pngs

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    paths = save_pngs(images, ["img1", "img2", "img3"], tmp_path / "png")
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "img1.png",
        "img2.png",
        "img3.png",
    ]
    for path, img in zip(paths, images, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), img)
    with pytest.raises(DataError, match="unique id"):
        save_pngs(images, ["a", "a", "b"], tmp_path / "dup")
    with pytest.raises(DataError, match="file names"):
        save_pngs(images, ["a", "../b", "c"], tmp_path / "bad")
    assert not (tmp_path / "dup").exists() and not (tmp_path / "bad").exists()


def test_save_reconstructions_pairs_each_recon_with_its_stimulus(tmp_path):
    import pandas as pd

    from fmridecode.generators import save_reconstructions
    from fmridecode.io import load_indexed

    rng = np.random.default_rng(1)
    stimuli = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    stim_index = pd.DataFrame({"stim_id": ["a", "b", "c"]})
    recon_index = pd.DataFrame({"stim_id": ["c", "a"], "extra": [1, 2]})
    recons = stimuli[[2, 0]]
    out = tmp_path / "gen"
    save_reconstructions(
        recons, recon_index, stimuli, stim_index, out / "r.npy", out / "png", out / "grid.png"
    )
    arr, index = load_indexed(out / "r.npy")
    np.testing.assert_array_equal(arr, recons)
    assert list(index.columns) == ["stim_id"] and list(index["stim_id"]) == ["c", "a"]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "png" / "c.png")), stimuli[2])
    grid = np.asarray(Image.open(out / "grid.png").convert("RGB"))
    # recons are the stimuli of their ids, so each pair's two tiles must be identical
    for c in range(2):
        x, y = PAD + c * (2 * TILE + PAD), PAD + LABEL
        left, right = grid[y : y + TILE, x : x + TILE], grid[y : y + TILE, x + TILE : x + 2 * TILE]
        np.testing.assert_array_equal(left, right)
    with pytest.raises(DataError, match="stimuli"):
        save_reconstructions(
            recons,
            pd.DataFrame({"stim_id": ["z", "a"]}),
            stimuli,
            stim_index,
            out / "r2.npy",
            out / "png2",
            out / "grid2.png",
        )


def test_img2img_keeps_the_first_guess_at_low_strength(trained):
    out, _, colour_emb = trained
    pipe = load_generator(out)
    init = np.broadcast_to(COLOURS[[RED, BLUE]][:, None, None, :], (2, 16, 16, 3)).copy()
    same = reconstruct(pipe, colour_emb[:2], steps=10, seed=0, init_images=init, strength=0.0)
    np.testing.assert_array_equal(same, init)  # strength 0: nothing to denoise
    # unconditional model (guidance 0), so only the first guess can make one red, one blue
    kept = reconstruct(
        pipe, colour_emb[:2], steps=10, guidance=0.0, seed=0, init_images=init, strength=0.4
    ).astype(float)
    red_minus_blue = kept[..., 0].mean(axis=(1, 2)) - kept[..., 2].mean(axis=(1, 2))
    assert red_minus_blue[0] > 60 and red_minus_blue[1] < -60, red_minus_blue
    # first guesses at another size are resized to the model's
    big = np.repeat(np.repeat(init, 4, axis=1), 4, axis=2)
    again = reconstruct(pipe, colour_emb[:2], steps=10, seed=0, init_images=big, strength=0.0)
    np.testing.assert_array_equal(again, init)
    with pytest.raises(ValueError, match="strength"):
        reconstruct(pipe, colour_emb[:2], init_images=init, strength=1.5)


def test_best_of_n_keeps_the_sample_closest_to_the_target():
    from fmridecode.generators.best_of import best_of_n

    # 3 stimuli, 4 samples each; "embedding" of an image = its mean colour
    colours = np.eye(3) * 255
    target = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    order = {0: [1, 1, 0], 1: [0, 2, 1], 2: [2, 1, 2], 3: [1, 0, 0]}  # colour per stimulus

    def sample(k):
        return np.stack([np.full((4, 4, 3), colours[c], dtype=np.uint8) for c in order[k]])

    def embed(images):
        return images.reshape(len(images), -1, 3).mean(axis=1)

    images, chosen, score = best_of_n(sample, 4, embed, target)
    # stimulus 0 wants colour 0: first at k=1; stimulus 1 colour 1: k=0 (ties keep the first);
    # stimulus 2 colour 2: k=2
    np.testing.assert_array_equal(chosen, [1, 0, 2])
    np.testing.assert_allclose(score, 1.0)
    np.testing.assert_array_equal(images[:, 0, 0], colours[[0, 1, 2]])
    one, chosen1, _ = best_of_n(sample, 1, embed, target)  # n = 1: the plain first sample
    np.testing.assert_array_equal(one, sample(0))
    assert (chosen1 == 0).all()
    with pytest.raises(DataError, match="non-finite"):
        best_of_n(sample, 2, embed, target * np.nan)


def test_loss_guidance_steers_the_unconditional_model(trained):
    out, _, colour_emb = trained
    pipe = load_generator(out)
    target = torch.tensor([0.8, -0.8, -0.8]).view(1, 3, 1, 1)  # red, in [-1, 1]

    def redness(x0, rows):  # one loss per image: distance of its mean colour from red
        assert x0.requires_grad and rows.stop - rows.start == len(x0)
        return ((x0.mean(dim=(2, 3), keepdim=True) - target) ** 2).sum(dim=(1, 2, 3))

    emb = colour_emb[[BLUE] * 4]
    kw = dict(steps=10, guidance=0.0, seed=0)  # unconditional: only guidance can pick a colour
    plain = reconstruct(pipe, emb, **kw).astype(float)
    steered = reconstruct(pipe, emb, guide=redness, guide_scale=1.0, **kw).astype(float)
    redness_of = lambda imgs: (imgs[..., 0] - imgs[..., 2]).mean()  # noqa: E731
    assert redness_of(steered) > redness_of(plain) + 40, (redness_of(plain), redness_of(steered))
    # scale 0 is exactly the unguided sampler
    zero = reconstruct(pipe, emb, guide=redness, guide_scale=0.0, **kw)
    np.testing.assert_array_equal(zero, plain.astype(np.uint8))


def test_clip_guide_and_bank_retrieval():
    from fmridecode.embeddings.model import create_untrained
    from fmridecode.generators.guidance import clip_guide, nearest_in_bank

    torch.manual_seed(0)
    model = create_untrained()
    model.eval()
    target = np.random.default_rng(0).standard_normal((3, model.text_projection.shape[1]))
    loss_fn = clip_guide(model, target)
    x = torch.zeros(2, 3, 16, 16, requires_grad=True)
    loss = loss_fn(x, slice(1, 3))
    assert loss.shape == (2,) and ((loss >= 0) & (loss <= 2)).all()
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert grad.abs().sum() > 0  # differentiable through resize, normalisation and the encoder
    stepped = loss_fn((x - 5.0 * grad / grad.norm()).detach(), slice(1, 3))
    assert stepped.sum() < loss.sum()  # a step down the gradient lowers the loss
    assert not any(p.requires_grad for p in model.parameters())  # only the image is optimised

    bank_emb = np.eye(3)
    bank = np.arange(3, dtype=np.uint8)[:, None, None, None] * np.ones((3, 2, 2, 3), np.uint8)
    imgs, rows = nearest_in_bank(np.array([[0.1, 0.9, 0.0], [2.0, 0.0, 0.1]]), bank_emb, bank)
    np.testing.assert_array_equal(rows, [1, 0])
    np.testing.assert_array_equal(imgs[:, 0, 0, 0], [1, 0])
    with pytest.raises(DataError, match="bank"):
        nearest_in_bank(np.ones((1, 4)), bank_emb, bank)


def test_add_noise_is_seeded_per_amplitude_and_clipped():
    from fmridecode.images import add_noise

    img = np.full((4, 8, 8, 3), 250, dtype=np.uint8)
    np.testing.assert_array_equal(add_noise(img, 0, seed=0), img)
    a, b = add_noise(img, 16, seed=0), add_noise(img, 16, seed=0)
    np.testing.assert_array_equal(a, b)  # same (seed, amplitude): same noise
    assert not np.array_equal(a, add_noise(img, 16, seed=1))
    assert a.dtype == np.uint8 and a.max() == 255  # clipped at the top, not wrapped
    diff = a.astype(float) - img
    assert 5 < np.abs(diff[diff < 0]).mean() < 30  # noise of roughly the asked SD (clipped half)
    big = add_noise(img, 256, seed=0).astype(float)
    assert big.std() > 60
    with pytest.raises(DataError, match="uint8"):
        add_noise(img.astype(float), 8, seed=0)
