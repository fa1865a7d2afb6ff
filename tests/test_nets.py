"""The network mappers: shapes, gradients, determinism, parameter groups, ``build`` and a tiny
synthetic linear problem each net must fit (small hyper-parameters keep the file fast)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fmridecode.mappers import losses, nets
from fmridecode.mappers.nets import (
    NETS,
    Brain2WordAE,
    BrainCLIPLinear,
    BrainCLIPVAE,
    MindReaderCNN,
    SequenceMapper,
    build,
)

#: (id, build name, small hyper-parameters) of every architecture; dropout left on.
SMALL = [
    ("linear", "brainclip_linear", {"dropout": 0.1}),
    ("vae", "brainclip_vae", {"latent": 16, "hidden": 64}),
    ("cnn", "mindreader_cnn", {"channels": 4, "hidden": 64}),
    ("ae", "brain2word_ae", {"hidden": (128, 32)}),
    ("gru", "gru", {"chunk": 32, "hidden": 32}),
    ("seqcnn", "gru", {"kind": "cnn", "chunk": 32, "hidden": 32}),
    ("transformer", "gru", {"kind": "transformer", "chunk": 32, "hidden": 32}),
]
SMALL_IDS = [c[0] for c in SMALL]


def _x(b: int, p: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, p, generator=torch.Generator().manual_seed(seed))


def _all_outputs(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A scalar touching every sub-network (the VAE's embedding side, the AE's decoder)."""
    w = _x(1, m.dim, seed=7)
    out = (m(x) * w).sum()
    if isinstance(m, BrainCLIPVAE):
        recon, mu, logvar = m.vae(_x(x.shape[0], m.dim, seed=8))
        out = out + (recon * w).sum() + losses.kl_normal(mu, logvar)
    if isinstance(m, Brain2WordAE):
        out = out + (m.reconstruct(x) * _x(1, m.n_voxels, seed=9)).sum()
    return out


@pytest.mark.parametrize("name,hp", [(c[1], c[2]) for c in SMALL], ids=SMALL_IDS)
@pytest.mark.parametrize("n_voxels", [256, 203])  # 203: not a multiple of chunk or stride
def test_output_shape_and_dtype(name, hp, n_voxels):
    torch.manual_seed(0)
    m = build(name, n_voxels, 12, **hp)
    for mode in (m.train, m.eval):
        mode()
        y = m(_x(3, n_voxels))
        assert y.shape == (3, 12) and y.dtype == torch.float32 and torch.isfinite(y).all()
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert (m.n_voxels, m.dim) == (n_voxels, 12)


@pytest.mark.parametrize("name", sorted(NETS))
def test_defaults_shape_including_large_output(name):
    torch.manual_seed(0)
    m = build(name, 203, 768).eval()  # 768 = a flattened 16 x 16 x 3 image, or a CLIP dim
    with torch.no_grad():
        assert m(_x(2, 203)).shape == (2, 768)


@pytest.mark.parametrize("name,hp", [(c[1], c[2]) for c in SMALL], ids=SMALL_IDS)
def test_gradients_reach_every_parameter(name, hp):
    torch.manual_seed(0)
    m = build(name, 203, 12, **hp).train()
    _all_outputs(m, _x(6, 203)).backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,hp", [(c[1], c[2]) for c in SMALL], ids=SMALL_IDS)
def test_seeded_construction_and_training_forward_are_reproducible(name, hp):
    x = _x(5, 203)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        m = build(name, 203, 12, **hp).train()
        runs.append((m.state_dict(), m(x)))
    (sd0, y0), (sd1, y1) = runs
    assert sd0.keys() == sd1.keys()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    assert torch.equal(y0, y1)
    torch.manual_seed(124)
    other = build(name, 203, 12, **hp)
    assert not all(torch.equal(sd0[k], v) for k, v in other.state_dict().items())


@pytest.mark.parametrize("name,hp", [(c[1], c[2]) for c in SMALL], ids=SMALL_IDS)
def test_eval_mode_is_deterministic_and_train_mode_uses_dropout(name, hp):
    torch.manual_seed(0)
    m = build(name, 203, 12, **hp)
    x = _x(5, 203)
    m.train()
    with torch.no_grad():
        m(x)  # one training-mode pass (moves BatchNorm running statistics)
        assert not torch.equal(m(x), m(x))  # every net has dropout on here
    m.eval()
    with torch.no_grad():
        y = m(x)
        torch.manual_seed(99)
        assert torch.equal(y, m(x))
        assert torch.allclose(m(x[:1]), y[:1], atol=1e-5)  # rows independent in eval mode


def test_vae_parts_sampling_and_parameter_groups():
    torch.manual_seed(0)
    m = BrainCLIPVAE(203, 12, latent=8, hidden=32)
    emb = _x(4, 12)
    recon, mu, logvar = m.vae(emb)
    assert recon.shape == (4, 12) and mu.shape == logvar.shape == (4, 8)
    assert m.fmri_latent(_x(4, 203)).shape == (4, 8)
    m.eval()
    with torch.no_grad():
        recon, mu, _ = m.vae(emb)
        assert torch.equal(recon, m.decoder(mu))  # eval mode decodes the mean
        assert torch.equal(mu, m.embed_latent(emb))
        x = _x(4, 203)
        assert torch.equal(m(x), m.decoder(m.fmri_latent(x)))
    m.train()
    torch.manual_seed(1)
    r1 = m.vae(emb)[0]
    torch.manual_seed(1)
    assert torch.equal(r1, m.vae(emb)[0])  # the sample follows the global seed
    assert not torch.equal(r1, m.vae(emb)[0])

    ids = {name: {id(p) for p in getattr(m, name)()} for name in
           ("decoder_parameters", "fmri_parameters", "vae_parameters")}  # fmt: skip
    everything = {id(p) for p in m.parameters()}
    assert ids["decoder_parameters"] == {id(p) for p in m.decoder.parameters()}
    assert ids["fmri_parameters"] == {id(p) for p in m.fmri_encoder.parameters()}
    assert not ids["decoder_parameters"] & ids["fmri_parameters"]
    assert not ids["vae_parameters"] & ids["fmri_parameters"]
    assert ids["decoder_parameters"] <= ids["vae_parameters"]
    assert ids["vae_parameters"] | ids["fmri_parameters"] == everything


def test_vae_freeze_keeps_the_embedding_side_fixed():
    torch.manual_seed(0)
    m = BrainCLIPVAE(203, 12, latent=8, hidden=32).freeze_vae()
    assert m.training and m.fmri_encoder.training
    assert not m.decoder.training and not m.embed_encoder.training
    assert all(not p.requires_grad for p in m.vae_parameters())
    assert all(p.requires_grad for p in m.fmri_parameters())
    m.eval().train()
    assert not m.decoder.training
    emb = _x(4, 12)
    assert torch.equal(m.vae(emb)[0], m.vae(emb)[0])  # no sampling while frozen
    before = [p.clone() for p in m.vae_parameters()]
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    losses.info_nce(m(_x(6, 203)), _x(6, 12, seed=1), 0.1).backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, m.vae_parameters(), strict=True))
    m.freeze_vae(False)
    assert m.decoder.training and all(p.requires_grad for p in m.parameters())


def test_brain2word_parts_and_parameter_groups():
    torch.manual_seed(0)
    m = Brain2WordAE(203, 12, hidden=(64, 16, 8)).eval()
    x = _x(4, 203)
    with torch.no_grad():
        z = m.encode(x)
        emb, vox = m.both(x)
        assert z.shape == (4, 8) and emb.shape == (4, 12) and vox.shape == (4, 203)
        assert torch.equal(emb, m(x)) and torch.equal(vox, m.reconstruct(x))
    linears = [mod for mod in m.decoder if isinstance(mod, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [16, 64, 203]  # mirrored, last linear
    assert isinstance(m.decoder[-1], torch.nn.Linear)
    ae = {id(p) for p in m.autoencoder_parameters()}
    head = {id(p) for p in m.head_parameters()}
    assert head == {id(p) for p in m.head.parameters()}
    assert not ae & head and ae | head == {id(p) for p in m.parameters()}
    enc = {id(p) for p in m.encoder.parameters()} | {id(p) for p in m.decoder.parameters()}
    assert ae == enc
    default = Brain2WordAE(203, 12)
    assert [mod.out_features for mod in default.encoder if isinstance(mod, torch.nn.Linear)] == [
        2000,
        200,
    ]
    acts = [mod for mod in default.encoder if isinstance(mod, torch.nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.3 for a in acts)


def test_mindreader_length_and_smallest_input():
    m = MindReaderCNN(203, 5)
    assert m.length == (203 - 9) // 4 + 1
    assert sum(isinstance(b, nets._ResBlock1d) for b in m.blocks) == 4
    assert [mod.out_features for mod in m.head if isinstance(mod, torch.nn.Linear)] == [
        512,
        512,
        5,
    ]
    tiny = MindReaderCNN(9, 3, channels=2, hidden=8).eval()  # n_voxels == kernel: length 1
    assert tiny.length == 1 and tiny(_x(2, 9)).shape == (2, 3)


def test_sequence_tokens_are_zero_padded_chunks():
    torch.manual_seed(0)
    m = SequenceMapper(203, 4, chunk=64, hidden=16)
    assert m.n_tokens == 4 and m.pad == 256 - 203
    x = _x(2, 203)
    tok = m.tokens(x)
    assert tok.shape == (2, 4, 16)
    last = torch.cat([x[:, 192:], torch.zeros(2, 256 - 203)], dim=1)
    assert torch.allclose(tok[:, 3], m.token_embed(last) + m.position[0, 3])
    assert torch.allclose(tok[:, 0], m.token_embed(x[:, :64]) + m.position[0, 0])
    g = SequenceMapper(203, 4, hidden=16, layers=3)
    assert len(g.rnns) == 3 and all(r.bidirectional for r in g.rnns)
    t = SequenceMapper(203, 4, kind="transformer", hidden=16, layers=3, heads=2)
    assert len(t.transformer.layers) == 3 and t.transformer.layers[0].self_attn.num_heads == 2


def test_build_kinds_and_hparams_round_trip():
    assert isinstance(build("brainclip_linear", 10, 3), BrainCLIPLinear)
    for kind in nets.SEQUENCE_KINDS:
        m = build("gru", 100, 3, kind=kind, hidden=16)
        assert isinstance(m, SequenceMapper) and m.kind == kind
    for name, cls in NETS.items():
        m = build(name, 100, 7)
        assert type(m) is cls
        again = build(name, m.n_voxels, m.dim, **m.hparams)
        assert {k: v.shape for k, v in again.state_dict().items()} == {
            k: v.shape for k, v in m.state_dict().items()
        }
    assert nets.hyperparameters("brain2word_ae")["hidden"] == (2000, 200)


def test_build_errors_name_the_culprit_and_the_allowed():
    with pytest.raises(ValueError, match="'ridge'.*brain2word_ae.*gru"):
        build("ridge", 10, 3)
    with pytest.raises(ValueError, match=r"\['latnet'\].*'latent'"):
        build("brainclip_vae", 10, 3, latnet=4)
    with pytest.raises(ValueError, match="kind.*'lstm'.*transformer"):
        build("gru", 10, 3, kind="lstm")
    with pytest.raises(ValueError, match="n_voxels"):
        build("mindreader_cnn", 8, 3)  # shorter than the kernel
    with pytest.raises(ValueError, match="heads"):
        build("gru", 10, 3, kind="transformer", hidden=10, heads=4)
    with pytest.raises(ValueError, match="dropout"):
        build("brainclip_linear", 10, 3, dropout=1.0)
    with pytest.raises(ValueError, match="dim"):
        build("brainclip_linear", 10, 0)
    with pytest.raises(ValueError, match="hidden"):
        build("brain2word_ae", 10, 3, hidden=())
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        build("brainclip_linear", 10, 3)(_x(2, 11))


# --- a tiny synthetic linear problem every net must fit --------------------------------------

N, P, D = 256, 200, 16


def _problem(rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxels x (N, P), standard normal or (with ``rank``) of that rank with unit variance,
    and a linear target y = x W (N, D)."""
    g = torch.Generator().manual_seed(0)
    if rank is None:
        x = torch.randn(N, P, generator=g)
    else:
        x = torch.randn(N, rank, generator=g) @ torch.randn(rank, P, generator=g) / rank**0.5
    return x, x @ (torch.randn(P, D, generator=g) / P**0.5)


def _train_cosine(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    m.eval()
    with torch.no_grad():
        return F.cosine_similarity(m(x), y, dim=1).mean().item()


FIT = [  # id, name, hp, Adam steps, learning rate
    ("linear", "brainclip_linear", {}, 100, 1e-2),
    ("cnn", "mindreader_cnn", {"channels": 4, "hidden": 64}, 150, 3e-3),
    ("ae", "brain2word_ae", {"hidden": (128, 32)}, 150, 3e-3),
    ("gru", "gru", {"chunk": 32, "hidden": 32}, 150, 1e-2),
    ("seqcnn", "gru", {"kind": "cnn", "chunk": 32, "hidden": 32}, 150, 1e-2),
    ("transformer", "gru", {"kind": "transformer", "chunk": 32, "hidden": 32}, 150, 1e-2),
]


@pytest.mark.parametrize("name,hp,steps,lr", [f[1:] for f in FIT], ids=[f[0] for f in FIT])
def test_fits_a_linear_problem(name, hp, steps, lr):
    x, y = _problem()
    torch.manual_seed(0)
    m = build(name, P, D, **hp)
    before = _train_cosine(m, x, y)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    m.train()
    for _ in range(steps):
        opt.zero_grad()
        losses.mse_loss(m(x), y).backward()
        opt.step()
    after = _train_cosine(m, x, y)
    assert abs(before) < 0.2 and after > 0.8, (before, after)


def test_brain2word_joint_training_fits_both_terms():
    x, y = _problem(rank=8)  # low-rank voxels, so a 32-unit code can reconstruct them
    torch.manual_seed(0)
    m = Brain2WordAE(P, D, hidden=(128, 32))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    with torch.no_grad():
        rec0 = losses.mse_loss(m.eval().reconstruct(x), x).item()
    m.train()
    for _ in range(150):
        opt.zero_grad()
        emb, vox = m.both(x)
        (losses.cosine_loss(emb, y) + losses.mse_loss(vox, x)).backward()
        opt.step()
    with torch.no_grad():
        rec = losses.mse_loss(m.eval().reconstruct(x), x).item()
    assert _train_cosine(m, x, y) > 0.8 and rec < 0.2 * rec0, (rec, rec0)


def test_vae_two_phase_recipe_fits():
    """Pretrain the VAE on the targets alone, freeze it, regress the fMRI encoder on the
    latent means: the composed map must fit the training targets."""
    x, y = _problem()
    torch.manual_seed(0)
    m = BrainCLIPVAE(P, D, latent=16, hidden=64)
    opt = torch.optim.Adam(m.vae_parameters(), lr=3e-3)
    m.train()
    for _ in range(150):
        opt.zero_grad()
        recon, mu, logvar = m.vae(y)
        (losses.cosine_loss(recon, y) + 1e-3 * losses.kl_normal(mu, logvar)).backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        assert F.cosine_similarity(m.vae(y)[0], y).mean().item() > 0.8
        z = m.embed_latent(y)
    m.freeze_vae()
    opt = torch.optim.Adam(m.fmri_parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        losses.mse_loss(m.fmri_latent(x), z).backward()
        opt.step()
    assert _train_cosine(m, x, y) > 0.8
