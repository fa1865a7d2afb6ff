"""The mappers' training loop: early stopping, best weights, exact resume, validation split."""

import numpy as np
import pytest
import torch
from devices import DEVICES

from fmridecode.io import DataError
from fmridecode.mappers.training import (
    MapperData,
    Phase,
    train_phases,
    validation_split,
)


def _data(n: int = 120, p: int = 20, d: int = 4, seed: int = 0, noise: float = 0.1):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(p, d))
    x = rng.normal(size=(n, p)).astype(np.float32)
    y = (x @ W + noise * rng.normal(size=(n, d))).astype(np.float32)
    return x, y


def _mse(model, batch):
    loss = torch.mean((model(batch["x"]) - batch["image"]) ** 2)
    return loss, {"mse": loss.item()}


def _phase(epochs: int = 30, lr: float = 0.05, name: str = "mse"):
    return Phase(name, _mse, lambda m: m.parameters(), epochs, lr, 0.0)


def _split(seed: int = 0):
    x, y = _data(seed=seed)
    return MapperData(x[:100], {"image": y[:100]}), MapperData(x[100:], {"image": y[100:]})


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(20, 4))


def test_training_learns_and_keeps_the_best_validation_epoch(tmp_path):
    train, val = _split()
    model = _model()
    res = train_phases(
        model, [_phase()], train, val, batch_size=16, patience=50, seed=0,
        checkpoint=tmp_path / "c.pt", key="k", progress=False,
    )  # fmt: skip
    curve = res.curve
    assert len(curve) == 30 and list(curve["epoch"]) == list(range(30))
    assert curve["val_loss"].iloc[-1] < 0.1 * curve["val_loss"].iloc[0]
    # the weights in the model are the best validation epoch's: re-evaluating gives its loss
    with torch.no_grad():
        model.eval()
        loss = float(_mse(model, {"x": torch.as_tensor(val.x), "image": torch.as_tensor(
            val.targets["image"])})[0])  # fmt: skip
    assert loss == pytest.approx(curve["val_loss"].min(), rel=1e-5)
    assert {"train_mse", "val_mse"} <= set(curve.columns)


def test_early_stopping_stops_after_patience(tmp_path):
    train, val = _split()
    # a huge learning rate makes validation loss stop improving quickly
    phase = Phase("big", _mse, lambda m: m.parameters(), 200, 5.0, 0.0)
    res = train_phases(
        _model(), [phase], train, val, batch_size=16, patience=3, seed=0,
        checkpoint=tmp_path / "c.pt", key="k", progress=False,
    )  # fmt: skip
    n = len(res.curve)
    assert n < 200
    best = int(np.argmin(res.curve["val_loss"]))
    assert n - 1 - best == 3  # stopped exactly `patience` epochs after the best one
    assert res.stops["big"].startswith("early stop")


def test_phases_train_only_their_parameters(tmp_path):
    train, val = _split()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.Linear(8, 4))
    first = model[0].weight.detach().clone()
    phase = Phase("second_only", _mse, lambda m: m[1].parameters(), 5, 0.05, 0.0)
    train_phases(
        model, [phase], train, val, batch_size=16, patience=10, seed=0,
        checkpoint=tmp_path / "c.pt", key="k", progress=False,
    )  # fmt: skip
    assert torch.equal(model[0].weight, first)
    assert all(p.requires_grad for p in model.parameters())  # unfrozen afterwards


class _Killed(Exception):
    pass


@pytest.mark.parametrize("device", DEVICES)
def test_a_killed_run_resumes_to_the_uninterrupted_weights(device, tmp_path):
    """Kill during phase 2, rerun with the same key: same weights and curve as one run."""
    train, val = _split()
    phases = [_phase(8, name="a"), _phase(8, lr=0.01, name="b")]
    ref = _model()
    ref_res = train_phases(
        ref, phases, train, val, batch_size=16, patience=50, seed=3,
        checkpoint=tmp_path / "ref.pt", key="k", progress=False, device=device,
    )  # fmt: skip

    calls = {"n": 0}

    def dying(model, batch):
        calls["n"] += 1
        if calls["n"] == 7 * 11:  # 7 batches per epoch: dies in the 11th epoch (phase b)
            raise _Killed
        return _mse(model, batch)

    dying_phases = [Phase(p.name, dying, p.parameters, p.epochs, p.lr, 0.0) for p in phases]
    ckpt = tmp_path / "run.pt"
    with pytest.raises(_Killed):
        train_phases(
            _model(), dying_phases, train, val, batch_size=16, patience=50, seed=3,
            checkpoint=ckpt, key="k", progress=False, device=device,
        )  # fmt: skip
    assert ckpt.exists()
    again = _model(seed=99)  # different init: everything must come from the checkpoint
    res = train_phases(
        again, phases, train, val, batch_size=16, patience=50, seed=3,
        checkpoint=ckpt, key="k", progress=False, device=device,
    )  # fmt: skip
    assert res.resumed_from is not None and res.resumed_from.startswith("phase 1")
    for a, b in zip(ref.state_dict().values(), again.state_dict().values(), strict=True):
        assert a.device.type == device and torch.equal(a, b)
    assert np.allclose(res.curve["val_loss"], ref_res.curve["val_loss"])


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    train, val = _split()
    ckpt = tmp_path / "c.pt"
    train_phases(
        _model(), [_phase(3)], train, val, batch_size=16, patience=5, seed=0,
        checkpoint=ckpt, key="old", progress=False,
    )  # fmt: skip
    res = train_phases(
        _model(), [_phase(3)], train, val, batch_size=16, patience=5, seed=0,
        checkpoint=ckpt, key="new", progress=False,
    )  # fmt: skip
    assert res.resumed_from is None


def test_random_caption_targets_change_per_epoch_and_mean_is_unit_norm():
    rng = np.random.default_rng(0)
    caps = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(10)]
    data = MapperData(np.zeros((10, 2), np.float32), captions=caps, caption="random")
    a = data.text(np.random.default_rng(1))
    b = data.text(np.random.default_rng(2))
    assert not np.array_equal(a, b)
    assert all(any(np.array_equal(r, c) for c in cs) for r, cs in zip(a, caps, strict=True))
    mean = MapperData(np.zeros((10, 2), np.float32), captions=caps, caption="mean").text(None)
    assert np.allclose(np.linalg.norm(mean, axis=1), 1.0)


def test_validation_split_is_imagewise_seeded_and_bounded():
    ids = [f"s{i:03d}" for i in range(50)] * 3  # repeats of each image
    a = validation_split(ids, 0.1, seed=0)
    assert len(a) == 5 and a <= set(ids)
    assert a == validation_split(list(reversed(ids)), 0.1, seed=0)  # order-free
    assert a != validation_split(ids, 0.1, seed=1)
    assert len(validation_split(["a", "b"], 0.9, 0)) == 1  # never all
    with pytest.raises(DataError):
        validation_split(["a"], 0.5, 0)


def test_non_finite_voxels_are_refused():
    x = np.zeros((4, 2), np.float32)
    x[1, 1] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        MapperData(x)
