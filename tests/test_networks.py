"""The feature networks of the reconstruction metrics: weights found or reported missing,
loaded strictly, features extracted at the metric's layers, rows written.

Real ImageNet weights cannot be downloaded here, so the loading path is exercised with weight
files of randomly initialised networks that the tests write themselves; the workflow never
does that (no weights -> unavailable rows, checked in test_workflow).
"""

import numpy as np
import pytest
import torch
import torchvision

from fmridecode.io import DataError
from fmridecode.metrics.networks import NETWORKS, features, load_network
from fmridecode.metrics.recon import network_row
from fmridecode.metrics.weights import CACHE_FILES, find_weights, hub_dir


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """An empty torch home for the test: its hub folder is where cached weights are looked for."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert hub_dir() == tmp_path / "torch" / "hub"
    return hub_dir()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8)


def _save(model: torch.nn.Module, path, prefix: str = "", extra: dict | None = None):
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save({**state, **(extra or {})}, path)
    return path


def test_missing_weights_are_a_reason_not_a_number(hub):
    assert set(CACHE_FILES) == set(NETWORKS)
    for name in NETWORKS:
        path, why = find_weights(name, None)
        assert path is None and why.startswith("unavailable: no ") and str(hub) in why
    row = network_row("alexnet2", None, None, {"generator": "g"}, "unavailable: no weights")
    assert np.isnan(row["value"]) and row["status"] == "unavailable: no weights"
    assert row["metric"] == "two_way_identification" and row["feature"] == "alexnet2"


def test_configured_path_must_exist_and_cache_is_found(hub, tmp_path):
    with pytest.raises(DataError, match=r"metrics.networks.alexnet: .*typo.pth is not a file"):
        find_weights("alexnet", tmp_path / "typo.pth")
    cached = hub / "checkpoints" / CACHE_FILES["alexnet"]
    cached.parent.mkdir(parents=True)
    _save(torchvision.models.alexnet(weights=None), cached)
    assert find_weights("alexnet", None) == (cached, "")
    with pytest.raises(DataError, match="unknown metric network"):
        find_weights("vgg", None)


def test_alexnet_features_at_both_layers(tmp_path, images):
    weights = _save(torchvision.models.alexnet(weights=None), tmp_path / "alexnet.pth")
    extractor = load_network("alexnet", weights)
    feats = features(extractor, images, "alexnet", batch_size=3)
    # 256 px input: features.4 (after conv2) 192 x 31 x 31, features.11 (after conv5) 256 x 15 x 15
    assert feats["alexnet2"].shape == (4, 192 * 31 * 31)
    assert feats["alexnet5"].shape == (4, 256 * 15 * 15)
    again = features(load_network("alexnet", weights), images, "alexnet")
    np.testing.assert_array_equal(feats["alexnet5"], again["alexnet5"])  # deterministic
    base = {"generator": "g"}
    perfect = network_row("alexnet5", feats["alexnet5"], feats["alexnet5"], base)
    assert perfect["value"] == 1.0 and perfect["chance"] == 0.5 and perfect["n"] == 4


@pytest.mark.parametrize("name", ["inception", "effnet"])
def test_avgpool_networks(tmp_path, images, name):
    build = NETWORKS[name].build
    weights = _save(build(), tmp_path / f"{name}.pth")
    feats = features(load_network(name, weights), images[:2], name)[name]
    assert feats.shape == (2, {"inception": 2048, "effnet": 1280}[name])
    assert np.isfinite(feats).all()


def test_swav_release_checkpoint_layout(tmp_path, images):
    """The SwAV release is a DataParallel state dict ('module.' keys) with a projection head
    and prototypes and no classifier: it loads; its features give a distance of 0 to itself."""
    model = torchvision.models.resnet50(weights=None)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    extra = {
        "module.projection_head.0.weight": torch.zeros(8, 2048),
        "module.prototypes.weight": torch.zeros(3, 8),
    }
    torch.save({**{"module." + k: v for k, v in state.items()}, **extra}, tmp_path / "swav.pth.tar")
    feats = features(load_network("swav", tmp_path / "swav.pth.tar"), images[:3], "swav")["swav"]
    assert feats.shape == (3, 2048)
    row = network_row("swav", feats, feats, {})
    assert row["metric"] == "swav_distance" and row["value"] == pytest.approx(0.0, abs=1e-9)
    assert "chance" not in row


def test_wrong_or_broken_weights_name_the_file(tmp_path):
    alex = _save(torchvision.models.alexnet(weights=None), tmp_path / "alexnet.pth")
    with pytest.raises(DataError, match=r"alexnet.pth: not inception weights"):
        load_network("inception", alex)
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="broken.pth: cannot read as a torch checkpoint"):
        load_network("alexnet", tmp_path / "broken.pth")
