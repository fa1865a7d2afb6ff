"""The seed papers' mappers trained end to end through mappers.zoo on a small linear problem."""

import numpy as np
import pandas as pd
import pytest
from devices import DEVICES

from fmridecode.io import DataError
from fmridecode.mappers import TRAINABLE
from fmridecode.mappers.zoo import fit_mapper, plan, subject_data
from fmridecode.metrics.retrieval import recall_at_k

#: every mapper at a size that trains in seconds
SMALL = {
    "brainclip_linear": {"supervision": "VT", "alpha": 1.0, "beta": 1.0, "temperature": 0.1,
                         "dropout": 0.1, "epochs": 30, "lr": 0.003, "weight_decay": 0.01},
    "brainclip_vae": {"supervision": "VT", "alpha": 1.0, "beta": 1.0, "temperature": 0.1,
                      "latent": 16, "hidden": 64, "dropout": 0.0, "kl_weight": 0.001,
                      "latent_weight": 1.0, "decoder_epochs": 30, "epochs": 30, "lr": 0.003,
                      "weight_decay": 0.01},
    "mindreader_cnn": {"channels": 4, "kernel": 5, "stride": 2, "hidden": 64, "dropout": 0.1,
                       "mse_weight": 1.0, "cosine_weight": 1.0, "contrastive_weight": 0.1,
                       "temperature": 0.1, "epochs": 15, "finetune_epochs": 5, "lr": 0.003,
                       "finetune_lr": 0.001, "weight_decay": 0.01},
    "brain2word_ae": {"hidden": [64, 32], "dropout": 0.1, "negative_slope": 0.3,
                      "variation": "pretrain_joint", "recon_weight": 0.5, "pretrain_epochs": 5,
                      "epochs": 30, "lr": 0.003, "weight_decay": 0.0001},
    "gru": {"kind": "gru", "chunk": 16, "hidden": 32, "layers": 2, "dropout": 0.1, "heads": 4,
            "epochs": 20, "lr": 0.003, "weight_decay": 0.01},
}  # fmt: skip


def _subject(n_train: int = 160, n_test: int = 40, p: int = 48, d: int = 8, seed: int = 0):
    """Voxels = a linear map of the image embedding + noise; 3 captions per image near it."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    ids = [f"img{i:03d}" for i in range(n)]
    emb = rng.normal(size=(n + 20, d)).astype(np.float32)  # 20 images nobody saw
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    A = rng.normal(size=(d, p))
    X = (emb[:n] @ A + 0.3 * rng.normal(size=(n, p))).astype(np.float32)
    vindex = pd.DataFrame({"stim_id": ids, "split": ["train"] * n_train + ["test"] * n_test})
    image_index = pd.DataFrame({"stim_id": ids + [f"extra{i}" for i in range(20)]})
    caps = np.repeat(emb[:n], 3, axis=0) + 0.2 * rng.normal(size=(3 * n, d)).astype(np.float32)
    caption_index = pd.DataFrame({"stim_id": np.repeat(ids, 3), "caption_idx": [0, 1, 2] * n})
    return X, vindex, emb, image_index, caps.astype(np.float32), caption_index


def test_subject_data_splits_imagewise_and_keeps_test_out_of_training():
    X, vindex, emb, image_index, caps, cap_index = _subject()
    train, val, eval_x, eval_index = subject_data(
        X, vindex, emb, image_index, caps, cap_index, 0.1, seed=0
    )
    assert len(train.x) == 144 and len(val.x) == 16 and len(eval_x["test"]) == 40
    test_ids = set(eval_index["test"]["stim_id"])
    assert test_ids.isdisjoint(eval_index["val"]["stim_id"])
    # unpaired embeddings: every cached image that is neither test nor validation
    assert len(train.unpaired) == 200 + 20 - 40 - 16
    assert all(len(c) == 3 for c in train.captions)
    bad = vindex.assign(split="train")
    with pytest.raises(DataError, match="no test rows"):
        subject_data(X, bad, emb, image_index, caps, cap_index, 0.1, seed=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mapper", TRAINABLE)
def test_every_mapper_learns_the_mapping(mapper, device, tmp_path):
    X, vindex, emb, image_index, caps, cap_index = _subject()
    data = subject_data(X, vindex, emb, image_index, caps, cap_index, 0.1, seed=0)
    train, val, eval_x, eval_index = data
    kw = dict(batch_size=32, patience=5, seed=0, device=device, progress=False)
    res = fit_mapper(mapper, train, val, eval_x, SMALL[mapper], partial=tmp_path / "a", **kw)
    test_ids = list(eval_index["test"]["stim_id"])
    truth = emb[[int(s[3:]) for s in test_ids]]
    for target in ("image", "text"):
        pred = res.predictions["test"][target]
        assert pred.shape == (40, 8) and pred.dtype == np.float32 and np.isfinite(pred).all()
        assert res.predictions["val"][target].shape == (len(val.x), 8)
    # test retrieval among 40 images: chance R@5 = 0.125
    r5 = recall_at_k(res.predictions["test"]["image"], truth, np.arange(40), (5,))[5]
    assert r5 > 0.5, f"{mapper}: R@5 {r5}"
    assert {"phase", "epoch", "train_loss", "val_loss", "model"} <= set(res.curve.columns)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mapper", TRAINABLE)
def test_every_mapper_is_deterministic_under_its_seed(mapper, device, tmp_path):
    X, vindex, emb, image_index, caps, cap_index = _subject(n_train=80, n_test=20)
    train, val, eval_x, _ = subject_data(X, vindex, emb, image_index, caps, cap_index, 0.1, 0)
    short = {k: (2 if "epochs" in k else v) for k, v in SMALL[mapper].items()}
    kw = dict(batch_size=16, patience=5, device=device, progress=False)
    a, b, c = (
        fit_mapper(mapper, train, val, eval_x, short, seed=seed, partial=tmp_path / name, **kw)
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    )
    assert np.array_equal(a.predictions["test"]["image"], b.predictions["test"]["image"])
    assert not np.array_equal(a.predictions["test"]["image"], c.predictions["test"]["image"])


def test_plans_follow_the_papers():
    dims = {"image": 8, "text": 8}
    assert [p.predicts for p in plan("brainclip_linear", 10, dims, SMALL["brainclip_linear"])] \
        == [("image", "text")]  # fmt: skip
    vae = plan("brainclip_vae", 10, dims, SMALL["brainclip_vae"])[0]
    assert [(ph.name, ph.data) for ph in vae.phases] == [
        ("decoder", "unpaired"), ("encoder", "paired")]  # fmt: skip
    mr = plan("mindreader_cnn", 10, dims, SMALL["mindreader_cnn"])
    assert [p.predicts for p in mr] == [("image",), ("text",)]
    assert [ph.name for ph in mr[0].phases] == ["mse_cosine", "finetune"]
    for variation, names in (("pretrain_regress", ["autoencoder", "regression"]),
                             ("pretrain_joint", ["autoencoder", "joint"]),
                             ("joint", ["joint"])):  # fmt: skip
        hp = SMALL["brain2word_ae"] | {"variation": variation}
        assert [ph.name for ph in plan("brain2word_ae", 10, dims, hp)[0].phases] == names
    with pytest.raises(ValueError, match="unknown trainable mapper"):
        plan("ridge", 10, dims, {})


def test_gru_predicts_the_low_level_target(tmp_path):
    """The two-stage method's first stage: the GRU maps voxels to a low-level target."""
    X, vindex, emb, image_index, caps, cap_index = _subject()
    rng = np.random.default_rng(1)
    n = len(vindex)
    lowres = np.clip(0.5 + 0.1 * (emb[:n] @ rng.normal(size=(8, 12))), 0, 1).astype(np.float32)
    ids = list(vindex["stim_id"])
    data = subject_data(
        X, vindex, emb, image_index, caps, cap_index, 0.1, seed=0,
        extra_targets={"lowres": (lowres, ids)},
    )  # fmt: skip
    train, val, eval_x, eval_index = data
    res = fit_mapper(
        "gru", train, val, eval_x, SMALL["gru"], batch_size=32, patience=5, seed=0,
        device="cpu", partial=tmp_path, progress=False, targets="lowres",
    )  # fmt: skip
    pred = res.predictions["test"]["lowres"]
    truth = lowres[[int(s[3:]) for s in eval_index["test"]["stim_id"]]]
    assert pred.shape == truth.shape and set(res.predictions["test"]) == {"lowres"}
    # what varies between images is predicted (the mean image alone would score 0)
    r = np.corrcoef((pred - pred.mean(0)).ravel(), (truth - truth.mean(0)).ravel())[0, 1]
    assert r > 0.5, r
    with pytest.raises(ValueError, match="low-level"):
        plan("mindreader_cnn", 10, {"image": 8, "text": 8, "lowres": 12}, {}, targets="lowres")
