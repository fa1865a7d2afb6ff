"""The feature networks of the field's reconstruction metrics, loaded only from real weights.

Brain-Diffuser and MindEye score reconstructions with ImageNet networks: AlexNet (2-way
identification on ``features.4`` = "AlexNet(2)" and ``features.11`` = "AlexNet(5)"),
Inception-v3 (2-way on ``avgpool``), EfficientNet-B1 and SwAV ResNet-50 (mean correlation
distance on ``avgpool``). Weights and preprocessing follow MindEye's evaluation code:
torchvision's default ImageNet weights (EfficientNet-B1: IMAGENET1K_V2) and the SwAV release's
ResNet-50; images resized (bilinear, square stimuli, no crop) to 256 for AlexNet, 342 for
Inception, 255 for EfficientNet, 224 for SwAV; ImageNet mean and std.

Weights are never downloaded and never random: ``metrics.weights.find_weights`` resolves them
(when the workflow is parsed, so they are rule inputs) and a network without them gives
unavailable rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from fmridecode.io import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Network:
    """A metric network: how to build it, which nodes feed which feature, its preprocessing."""

    build: Callable[[], torch.nn.Module]
    nodes: Mapping[str, str]  # feature name -> graph node
    resize: int  # square side the images are resized to (bilinear)
    strip_prefix: str = ""  # removed from state-dict keys (SwAV's DataParallel "module.")
    ignore: tuple[str, ...] = ()  # state-dict key prefixes the metric does not use


def _swav() -> torch.nn.Module:
    return torchvision.models.resnet50(weights=None)


NETWORKS: dict[str, Network] = {
    "alexnet": Network(
        lambda: torchvision.models.alexnet(weights=None),
        {"alexnet2": "features.4", "alexnet5": "features.11"},
        256,
    ),
    "inception": Network(
        # what torchvision builds for its ImageNet weights (transform_input on, aux head kept)
        lambda: torchvision.models.inception_v3(
            weights=None, aux_logits=True, transform_input=True, init_weights=False
        ),
        {"inception": "avgpool"},
        342,
    ),
    "effnet": Network(
        lambda: torchvision.models.efficientnet_b1(weights=None),
        {"effnet": "avgpool"},
        255,
    ),
    "swav": Network(
        _swav,
        {"swav": "avgpool"},
        224,
        strip_prefix="module.",
        ignore=("projection_head.", "prototypes.", "fc."),
    ),
}


def load_network(name: str, weights: str | os.PathLike) -> torch.nn.Module:
    """The network with its weights loaded strictly (all parameters the metric uses), eval mode,
    as a feature extractor returning the metric's nodes."""
    spec = NETWORKS[name]
    model = spec.build()
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors
        raise DataError(f"{weights}: cannot read as a torch checkpoint ({e})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{weights}: not a state dict")
    state = {k.removeprefix(spec.strip_prefix): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(spec.ignore)}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(spec.ignore)]
    if missing or result.unexpected_keys:
        raise DataError(
            f"{weights}: not {name} weights (missing {missing[:3]}, unexpected "
            f"{result.unexpected_keys[:3]})"
        )
    model.eval()
    return create_feature_extractor(model, return_nodes={v: k for k, v in spec.nodes.items()})


def preprocess(images: np.ndarray, name: str) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the network's normalised input (N, 3, S, S)."""
    spec = NETWORKS[name]
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(spec.resize, spec.resize), mode="bilinear", antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def features(
    extractor: torch.nn.Module, images: np.ndarray, name: str, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """Flattened features (N, F) float32 of every node of network ``name``."""
    out: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(images), batch_size):
        feats = extractor(preprocess(images[s : s + batch_size], name))
        for k, v in feats.items():
            out.setdefault(k, []).append(v.flatten(1).float().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}
