"""Network mappers from a voxel vector (B, n_voxels) to an embedding (B, dim), pure torch.

The architectures of the "mapper zoo" (issue 6); the training loop, phases and checkpoints live
in ``fmridecode.mappers.training``, which calls these modules. Every class takes
``n_voxels, dim`` first, then keyword hyper-parameters with defaults, and its ``forward(x)``
maps (B, n_voxels) float32 voxels to the (B, dim) prediction of the embedding. The output may
be a CLIP embedding or any other target (e.g. a flattened 16 x 16 x 3 low-resolution image):
nothing here assumes a CLIP target or normalises the output.

- ``BrainCLIPLinear``: BrainCLIP's linear mapper (Liu et al. 2023).
- ``BrainCLIPVAE``: BrainCLIP's VAE variant: a VAE pretrained on (unpaired) CLIP image
  embeddings, whose decoder is then frozen while an fMRI encoder learns to hit its latent.
- ``MindReaderCNN``: Mind Reader's mapper (Lin et al. 2022): a strided Conv1D over the voxel
  vector, four residual blocks, three fully connected layers.
- ``Brain2WordAE``: Brain2Word's autoencoder (Affolter et al. 2020): a dense encoder of the
  voxels, an embedding regression head on its code and a mirrored decoder back to the voxels.
- ``SequenceMapper``: the two-stage method's mapper: the voxel vector cut into a sequence of
  chunks, a bidirectional GRU (or a 1D CNN or a Transformer) over the chunks, mean pooling and
  two fully connected layers.

``build(name, n_voxels, dim, **hp)`` constructs one by its config name and rejects unknown
names and hyper-parameters. Each module keeps ``n_voxels``, ``dim`` and ``hparams`` (the keyword
hyper-parameters it was built with), so ``build(name, m.n_voxels, m.dim, **m.hparams)`` rebuilds
the same architecture for loading a state dict. Construction and the random parts of training
(dropout, the VAE's sampling) draw from torch's global generator, so they are reproducible
under ``torch.manual_seed``; in eval mode every forward is deterministic.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NETS",
    "SEQUENCE_KINDS",
    "Brain2WordAE",
    "BrainCLIPLinear",
    "BrainCLIPVAE",
    "MindReaderCNN",
    "SequenceMapper",
    "build",
    "hyperparameters",
]


def _check_sizes(cls: str, n_voxels: int, dim: int) -> None:
    for name, v in (("n_voxels", n_voxels), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{cls}: {name} must be a positive int, got {v!r}")


def _check_positive(cls: str, **values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{cls}: {name} must be a positive int, got {v!r}")


def _check_dropout(cls: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{cls}: dropout must be in [0, 1), got {p!r}")


def _check_input(module: nn.Module, x: torch.Tensor) -> None:
    n = module.n_voxels
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"{type(module).__name__}: expected input (B, {n}), got {tuple(x.shape)}")


class BrainCLIPLinear(nn.Module):
    """BrainCLIP's linear mapper (Liu et al. 2023): optional dropout on the voxels, then one
    ``nn.Linear(n_voxels, dim)`` with bias.

    The simplest of BrainCLIP's fMRI encoders; with InfoNCE (``losses.brainclip_loss``) it is a
    contrastively trained linear map into CLIP space, with MSE a (non-ridge) linear regression.
    """

    def __init__(self, n_voxels: int, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        _check_sizes("BrainCLIPLinear", n_voxels, dim)
        _check_dropout("BrainCLIPLinear", dropout)
        self.n_voxels, self.dim = n_voxels, dim
        self.hparams: dict[str, Any] = {"dropout": dropout}
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(n_voxels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x)
        return self.linear(self.dropout(x))


class _GaussianEncoder(nn.Module):
    """in -> hidden (GELU, dropout) -> (mu, logvar), each of size ``latent``."""

    def __init__(self, n_in: int, hidden: int, latent: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout))
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(e)
        return self.mu(h), self.logvar(h)


def _mlp(n_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    """in -> hidden (GELU, dropout) -> out (linear)."""
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out)
    )


class BrainCLIPVAE(nn.Module):
    """BrainCLIP's VAE variant (Liu et al. 2023).

    Paired fMRI data are scarce while CLIP image embeddings of unlabelled images are not, so a
    VAE is first trained on CLIP image embeddings alone (``vae``: cosine reconstruction + KL,
    ``losses.cosine_loss`` and ``losses.kl_normal``). Its decoder then defines a smooth map
    from a low-dimensional latent onto the manifold of CLIP embeddings; after pretraining the
    decoder is frozen and only the fMRI encoder is trained, either into the latent (MSE to
    ``embed_latent`` of the paired image embedding) or end to end through the frozen decoder
    (e.g. InfoNCE of ``forward(x)`` to the image embedding).

    Parts (each hidden layer: Linear, GELU, dropout):

    - ``embed_encoder``: dim -> hidden -> (mu, logvar), each (B, latent);
    - ``decoder``: latent -> hidden -> dim;
    - ``fmri_encoder``: n_voxels -> hidden -> latent (predicts the latent mean).

    ``forward(x) = decoder(fmri_latent(x))``. Parameter groups: ``vae_parameters()``
    (embed_encoder + decoder, the pretraining phase), ``decoder_parameters()`` and
    ``fmri_parameters()`` (the fMRI phase); ``freeze_vae()`` is a convenience for the second
    phase.
    """

    def __init__(
        self,
        n_voxels: int,
        dim: int,
        latent: int = 256,
        hidden: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _check_sizes("BrainCLIPVAE", n_voxels, dim)
        _check_positive("BrainCLIPVAE", latent=latent, hidden=hidden)
        _check_dropout("BrainCLIPVAE", dropout)
        self.n_voxels, self.dim = n_voxels, dim
        self.hparams: dict[str, Any] = {"latent": latent, "hidden": hidden, "dropout": dropout}
        self.embed_encoder = _GaussianEncoder(dim, hidden, latent, dropout)
        self.decoder = _mlp(latent, hidden, dim, dropout)
        self.fmri_encoder = _mlp(n_voxels, hidden, latent, dropout)
        self._vae_frozen = False

    def vae(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(recon, mu, logvar) of CLIP embeddings ``emb`` (B, dim).

        In train mode the latent is the reparameterised sample ``mu + eps * exp(logvar / 2)``
        (eps from torch's global generator); in eval mode it is ``mu``.
        """
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(f"BrainCLIPVAE.vae: expected (B, {self.dim}), got {tuple(emb.shape)}")
        mu, logvar = self.embed_encoder(emb)
        if self.embed_encoder.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decoder(z), mu, logvar

    def embed_latent(self, emb: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``mu`` (B, latent) of CLIP embeddings: the latent regression target
        of the fMRI encoder (call under ``torch.no_grad`` with the VAE in eval mode)."""
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise ValueError(
                f"BrainCLIPVAE.embed_latent: expected (B, {self.dim}), got {tuple(emb.shape)}"
            )
        return self.embed_encoder(emb)[0]

    def fmri_latent(self, x: torch.Tensor) -> torch.Tensor:
        """The fMRI encoder's prediction (B, latent) of the latent mean."""
        _check_input(self, x)
        return self.fmri_encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fmri_latent(x))

    def vae_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the embedding VAE (embed_encoder, then decoder): the pretraining phase."""
        yield from self.embed_encoder.parameters()
        yield from self.decoder.parameters()

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the decoder (latent -> embedding), frozen after pretraining."""
        return self.decoder.parameters()

    def fmri_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the fMRI encoder (voxels -> latent), trained in the second phase."""
        return self.fmri_encoder.parameters()

    def freeze_vae(self, frozen: bool = True) -> BrainCLIPVAE:
        """Freeze (or unfreeze) embed_encoder and decoder: ``requires_grad`` off and, while
        frozen, both stay in eval mode (no dropout, no sampling) even after ``train()``."""
        self._vae_frozen = frozen
        for p in self.vae_parameters():
            p.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> BrainCLIPVAE:
        super().train(mode)
        if self._vae_frozen:
            self.embed_encoder.eval()
            self.decoder.eval()
        return self


class _ResBlock1d(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity skip, then ReLU (kernel 3, same length/channels)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm1d(channels),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h + self.body(h))


class MindReaderCNN(nn.Module):
    """Mind Reader's fMRI mapper (Lin et al. 2022).

    The voxel vector is read as a 1-channel signal: one Conv1D (1 -> ``channels``, ``kernel``,
    ``stride``, no padding) with BatchNorm1d + ReLU, four residual blocks (conv-BN-ReLU-conv-BN
    + skip, then ReLU; kernel 3, same length and channels), flatten, then three linear layers
    ``channels * L -> hidden -> hidden -> dim`` with ReLU + dropout between, where
    ``L = (n_voxels - kernel) // stride + 1`` (so any ``n_voxels >= kernel`` works; trailing
    voxels that do not fill a last window are not seen). The paper trains it with MSE + cosine
    + contrastive terms (``losses``). BatchNorm needs batches of at least 2 in train mode; the
    convolutions followed by BatchNorm have no bias (it would be redundant with zero gradient).

    This follows the paper's description (one conv layer, four residual blocks, three linear
    layers); the authors' released code realises the last layers as 1x1 convolutions.
    """

    def __init__(
        self,
        n_voxels: int,
        dim: int,
        channels: int = 16,
        kernel: int = 9,
        stride: int = 4,
        hidden: int = 512,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        _check_sizes("MindReaderCNN", n_voxels, dim)
        _check_positive(
            "MindReaderCNN", channels=channels, kernel=kernel, stride=stride, hidden=hidden
        )
        _check_dropout("MindReaderCNN", dropout)
        if n_voxels < kernel:
            raise ValueError(f"MindReaderCNN: n_voxels ({n_voxels}) must be >= kernel ({kernel})")
        self.n_voxels, self.dim = n_voxels, dim
        self.hparams: dict[str, Any] = {
            "channels": channels,
            "kernel": kernel,
            "stride": stride,
            "hidden": hidden,
            "dropout": dropout,
        }
        self.length = (n_voxels - kernel) // stride + 1
        self.stem = nn.Sequential(
            nn.Conv1d(1, channels, kernel, stride=stride, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*(_ResBlock1d(channels) for _ in range(4)))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * self.length, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x)
        return self.head(self.blocks(self.stem(x.unsqueeze(1))))


def _dense_block(n_in: int, n_out: int, dropout: float, slope: float) -> list[nn.Module]:
    """Linear (no bias: the BatchNorm's shift replaces it) + BatchNorm1d + LeakyReLU + Dropout."""
    return [
        nn.Linear(n_in, n_out, bias=False),
        nn.BatchNorm1d(n_out),
        nn.LeakyReLU(slope),
        nn.Dropout(dropout),
    ]


class Brain2WordAE(nn.Module):
    """Brain2Word's autoencoder (Affolter et al. 2020).

    Encoder ``n_voxels -> hidden[0] -> ... -> hidden[-1]`` (default 2000 -> 200), each layer
    Linear + BatchNorm1d + LeakyReLU(``negative_slope``) + Dropout(``dropout``); a regression
    head ``hidden[-1] -> dim`` (Linear) predicting the embedding from the code; a mirrored
    decoder ``hidden[-1] -> ... -> hidden[0] -> n_voxels`` (same blocks, last layer linear)
    reconstructing the voxels. The reconstruction term regularises the code with the voxels
    themselves (usable on unpaired fMRI too), which is how the paper copes with few samples.

    Parameter groups for the three training variations: ``autoencoder_parameters()``
    (encoder + decoder) and ``head_parameters()`` (the head): pretrain the autoencoder then the
    head only; pretrain then train jointly; or train jointly from scratch (``both``).
    BatchNorm needs batches of at least 2 in train mode. The Linear layers followed by
    BatchNorm have no bias (BatchNorm subtracts the batch mean, so a bias there would be a
    redundant parameter with zero gradient; the BatchNorm shift plays its role).
    """

    def __init__(
        self,
        n_voxels: int,
        dim: int,
        hidden: Sequence[int] = (2000, 200),
        dropout: float = 0.4,
        negative_slope: float = 0.3,
    ) -> None:
        super().__init__()
        _check_sizes("Brain2WordAE", n_voxels, dim)
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("Brain2WordAE: hidden must name at least one layer size")
        _check_positive("Brain2WordAE", **{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        _check_dropout("Brain2WordAE", dropout)
        self.n_voxels, self.dim = n_voxels, dim
        self.hparams: dict[str, Any] = {
            "hidden": hidden,
            "dropout": dropout,
            "negative_slope": negative_slope,
        }
        enc: list[nn.Module] = []
        for n_in, n_out in zip((n_voxels, *hidden[:-1]), hidden, strict=True):
            enc += _dense_block(n_in, n_out, dropout, negative_slope)
        self.encoder = nn.Sequential(*enc)
        self.head = nn.Linear(hidden[-1], dim)
        dec: list[nn.Module] = []
        back = hidden[::-1]
        for n_in, n_out in zip(back[:-1], back[1:], strict=True):
            dec += _dense_block(n_in, n_out, dropout, negative_slope)
        dec.append(nn.Linear(back[-1], n_voxels))
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code (B, hidden[-1])."""
        _check_input(self, x)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The voxels (B, n_voxels) decoded from the code."""
        return self.decoder(self.encode(x))

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, voxels) from one encoder pass (one dropout mask for both terms)."""
        z = self.encode(x)
        return self.head(z), self.decoder(z)

    def autoencoder_parameters(self) -> Iterator[nn.Parameter]:
        """Encoder then decoder parameters (the autoencoder pretraining phase)."""
        yield from self.encoder.parameters()
        yield from self.decoder.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """The regression head's parameters."""
        return self.head.parameters()


#: allowed values of ``SequenceMapper(kind=...)``.
SEQUENCE_KINDS = ("gru", "cnn", "transformer")


class SequenceMapper(nn.Module):
    """The two-stage method's mapper: a sequence model over chunks of the voxel vector.

    The voxel vector is zero-padded to ``T * chunk`` voxels, ``T = ceil(n_voxels / chunk)``,
    and cut into T tokens of ``chunk`` consecutive voxels; each token is embedded by one
    ``Linear(chunk, hidden)`` plus a learned position embedding (T, hidden). Then, by ``kind``:

    - ``"gru"``: ``layers`` bidirectional GRU layers (hidden units per direction), each followed
      by LayerNorm and dropout; output width 2 * hidden;
    - ``"cnn"``: ``layers`` residual blocks ``h + dropout(GELU(LayerNorm(Conv1d(h))))`` over the
      token axis (kernel 3, padding 1); output width hidden;
    - ``"transformer"``: ``nn.TransformerEncoder`` with ``layers`` pre-norm layers of ``heads``
      heads (feed-forward 4 * hidden, GELU, batch_first) and a final LayerNorm; output width
      hidden (which ``heads`` must divide).

    The tokens are mean-pooled and two fully connected layers (width -> hidden -> dim, GELU +
    dropout between) give the output. The token order follows the voxel order of the input
    (e.g. the ROI mask's order), so neighbouring voxels in a chunk are usually neighbours in
    the brain. The output is unconstrained: a CLIP embedding or a low-level target (e.g. a
    flattened 16 x 16 x 3 image, dim 768).
    """

    def __init__(
        self,
        n_voxels: int,
        dim: int,
        kind: str = "gru",
        chunk: int = 64,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.2,
        heads: int = 4,
    ) -> None:
        super().__init__()
        _check_sizes("SequenceMapper", n_voxels, dim)
        if kind not in SEQUENCE_KINDS:
            raise ValueError(f"SequenceMapper: unknown kind {kind!r}; allowed: {SEQUENCE_KINDS}")
        _check_positive("SequenceMapper", chunk=chunk, hidden=hidden, layers=layers, heads=heads)
        _check_dropout("SequenceMapper", dropout)
        if kind == "transformer" and hidden % heads:
            raise ValueError(
                f"SequenceMapper: hidden ({hidden}) must be a multiple of heads ({heads})"
            )
        self.n_voxels, self.dim = n_voxels, dim
        self.hparams: dict[str, Any] = {
            "kind": kind,
            "chunk": chunk,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
            "heads": heads,
        }
        self.kind, self.chunk = kind, chunk
        self.n_tokens = math.ceil(n_voxels / chunk)
        self.pad = self.n_tokens * chunk - n_voxels
        self.token_embed = nn.Linear(chunk, hidden)
        self.position = nn.Parameter(torch.empty(1, self.n_tokens, hidden))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.drop = nn.Dropout(dropout)
        if kind == "gru":
            self.rnns = nn.ModuleList(
                nn.GRU(hidden if i == 0 else 2 * hidden, hidden, batch_first=True,
                       bidirectional=True)
                for i in range(layers)
            )  # fmt: skip
            self.norms = nn.ModuleList(nn.LayerNorm(2 * hidden) for _ in range(layers))
            width = 2 * hidden
        elif kind == "cnn":
            self.convs = nn.ModuleList(
                nn.Conv1d(hidden, hidden, 3, padding=1) for _ in range(layers)
            )
            self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
            width = hidden
        else:
            layer = nn.TransformerEncoderLayer(
                hidden,
                heads,
                dim_feedforward=4 * hidden,
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.transformer = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False
            )
            width = hidden
        self.head = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The embedded token sequence (B, T, hidden), before the sequence model."""
        _check_input(self, x)
        seq = F.pad(x, (0, self.pad)).view(x.shape[0], self.n_tokens, self.chunk)
        return self.token_embed(seq) + self.position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tokens(x)
        if self.kind == "gru":
            for rnn, norm in zip(self.rnns, self.norms, strict=True):
                h = self.drop(norm(rnn(h)[0]))
        elif self.kind == "cnn":
            for conv, norm in zip(self.convs, self.norms, strict=True):
                y = conv(h.transpose(1, 2)).transpose(1, 2)
                h = h + self.drop(F.gelu(norm(y)))
        else:
            h = self.transformer(h)
        return self.head(h.mean(dim=1))


#: config name -> class, for ``build``.
NETS: dict[str, type[nn.Module]] = {
    "brainclip_linear": BrainCLIPLinear,
    "brainclip_vae": BrainCLIPVAE,
    "mindreader_cnn": MindReaderCNN,
    "brain2word_ae": Brain2WordAE,
    "gru": SequenceMapper,
}


def hyperparameters(name: str) -> dict[str, Any]:
    """The keyword hyper-parameters of net ``name`` with their defaults."""
    if name not in NETS:
        raise ValueError(f"unknown mapper network {name!r}; allowed: {sorted(NETS)}")
    sig = inspect.signature(NETS[name].__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in ("self", "n_voxels", "dim")}


def build(name: str, n_voxels: int, dim: int, **hp: Any) -> nn.Module:
    """Construct mapper network ``name`` (a key of ``NETS``) for ``n_voxels`` -> ``dim``.

    ``hp`` are the class's keyword hyper-parameters ("gru" builds a ``SequenceMapper`` and
    accepts ``kind``). An unknown name or hyper-parameter raises ValueError naming it and the
    allowed ones; bad values raise ValueError from the class.
    """
    allowed = hyperparameters(name)
    unknown = sorted(set(hp) - set(allowed))
    if unknown:
        raise ValueError(
            f"mapper network {name!r}: unknown hyper-parameter(s) {unknown}; "
            f"allowed: {sorted(allowed)}"
        )
    return NETS[name](n_voxels, dim, **hp)
