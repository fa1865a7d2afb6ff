"""The mapper losses against hand-computed values and torch's own implementations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fmridecode.mappers.losses import brainclip_loss, cosine_loss, info_nce, kl_normal, mse_loss


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_cosine_loss_identical_opposite_orthogonal():
    a = _randn(5, 7)
    assert cosine_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert cosine_loss(a, 3.0 * a).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert cosine_loss(a, -a).item() == pytest.approx(2.0, abs=1e-6)
    e = torch.eye(4)
    assert cosine_loss(e, e.roll(1, dims=0)).item() == pytest.approx(1.0, abs=1e-6)
    # mean over rows: one aligned row (0) and one opposite row (2)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    assert cosine_loss(p, t).item() == pytest.approx(1.0, abs=1e-6)


def test_cosine_loss_zero_row_is_finite():
    p = torch.zeros(2, 3, requires_grad=True)
    loss = cosine_loss(p, _randn(2, 3))
    loss.backward()
    assert loss.item() == pytest.approx(1.0) and torch.isfinite(p.grad).all()


def test_mse_matches_torch():
    p, t = _randn(6, 5, seed=1), _randn(6, 5, seed=2)
    assert torch.allclose(mse_loss(p, t), torch.nn.MSELoss()(p, t))
    assert mse_loss(p, t).item() == pytest.approx(((p - t) ** 2).mean().item(), rel=1e-6)


def test_info_nce_perfect_diagonal_is_near_zero_at_low_temperature():
    e = torch.eye(8)
    assert info_nce(e, e, temperature=0.01).item() < 1e-6
    # scaled rows too: the rows are L2-normalised first
    assert info_nce(5.0 * e, 0.1 * e, temperature=0.01).item() < 1e-6


def test_info_nce_uniform_logits_is_log_b():
    for b in (2, 5, 16):
        # every pred row identical and every target row identical -> every logit equal
        pred = torch.ones(b, 4)
        target = _randn(1, 4, seed=b).expand(b, 4)
        assert info_nce(pred, target, 0.07).item() == pytest.approx(math.log(b), rel=1e-5)


def test_info_nce_hand_computed_2x2():
    e = torch.eye(2)
    # logits = I / 1: each row and column has softmax e/(e+1) on its label
    expected = math.log(1.0 + math.exp(-1.0))
    assert info_nce(e, e, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_matches_a_loop_reference_and_is_symmetric():
    p, t, tau = _randn(6, 4, seed=3), _randn(6, 4, seed=4), 0.3
    pn = p / p.norm(dim=1, keepdim=True)
    tn = t / t.norm(dim=1, keepdim=True)
    s = [[float(pn[i] @ tn[j]) / tau for j in range(6)] for i in range(6)]
    rows = [-s[i][i] + math.log(sum(math.exp(v) for v in s[i])) for i in range(6)]
    cols = [-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(6))) for j in range(6)]
    expected = 0.5 * (sum(rows) / 6 + sum(cols) / 6)
    assert info_nce(p, t, tau).item() == pytest.approx(expected, rel=1e-5)
    assert info_nce(t, p, tau).item() == pytest.approx(expected, rel=1e-5)


def test_info_nce_duplicates_count_as_negatives():
    # two identical targets: their rows cannot tell them apart, so the loss stays above 0
    t = torch.eye(3)
    t[1] = t[0]
    assert info_nce(t.clone(), t, 0.01).item() == pytest.approx(math.log(2) * 2 / 3, rel=1e-4)


def test_info_nce_temperature_tensor_gets_gradient_and_bad_values_raise():
    log_t = torch.tensor(math.log(0.1), requires_grad=True)
    info_nce(_randn(4, 3), _randn(4, 3, seed=1), log_t.exp()).backward()
    assert log_t.grad is not None and torch.isfinite(log_t.grad)
    for bad in (0.0, -1.0, torch.tensor(-0.5), torch.ones(2)):
        with pytest.raises(ValueError, match="temperature"):
            info_nce(_randn(4, 3), _randn(4, 3), bad)


def test_kl_normal_standard_is_zero_and_hand_computed_case():
    assert kl_normal(torch.zeros(3, 5), torch.zeros(3, 5)).item() == 0.0
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # row 0: 0.5 * (1 + 1 - 1 - 0) + 0.5 * (0 + 2 - 1 - log 2); row 1: 0; mean over 2 rows
    expected = (0.5 + 0.5 * (1.0 - math.log(2.0))) / 2
    assert kl_normal(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_kl_normal_matches_torch_distributions():
    mu, logvar = _randn(4, 6, seed=5), 0.5 * _randn(4, 6, seed=6)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    ref = torch.distributions.kl_divergence(q, p).sum(dim=1).mean()
    assert kl_normal(mu, logvar).item() == pytest.approx(ref.item(), rel=1e-5)


def test_brainclip_loss_terms():
    pred, img, txt = _randn(8, 6), _randn(8, 6, seed=1), _randn(8, 6, seed=2)
    tau = 0.1
    only_t = brainclip_loss(pred, img, txt, alpha=0.0, beta=0.7, temperature=tau)
    assert only_t.item() == pytest.approx(0.7 * info_nce(pred, txt, tau).item(), rel=1e-6)
    only_v = brainclip_loss(pred, img, txt, alpha=1.5, beta=0.0, temperature=tau)
    assert only_v.item() == pytest.approx(1.5 * info_nce(pred, img, tau).item(), rel=1e-6)
    both = brainclip_loss(pred, img, txt, alpha=1.5, beta=0.7, temperature=tau)
    assert both.item() == pytest.approx(only_t.item() + only_v.item(), rel=1e-6)
    # a skipped term is not computed: NaN text embeddings do not matter under supervision V
    nan = torch.full_like(txt, float("nan"))
    assert torch.isfinite(brainclip_loss(pred, img, nan, 1.0, 0.0, tau))
    with pytest.raises(ValueError, match="alpha and beta"):
        brainclip_loss(pred, img, txt, 0.0, 0.0, tau)
    with pytest.raises(ValueError, match="alpha and beta"):
        brainclip_loss(pred, img, txt, -1.0, 1.0, tau)


@pytest.mark.parametrize("fn", [cosine_loss, mse_loss, kl_normal, lambda a, b: info_nce(a, b, 1)])
def test_shape_errors(fn):
    with pytest.raises(ValueError):
        fn(_randn(4, 3), _randn(4, 2))
    with pytest.raises(ValueError):
        fn(_randn(4), _randn(4))


def test_losses_return_scalars_with_gradients():
    p = _randn(5, 4).requires_grad_()
    t = _randn(5, 4, seed=1)
    for loss in (
        cosine_loss(p, t),
        mse_loss(p, t),
        info_nce(p, t, 0.1),
        kl_normal(p, t),
        brainclip_loss(p, t, t, 1.0, 1.0, 0.1),
    ):
        assert loss.ndim == 0 and loss.dtype == torch.float32
        (g,) = torch.autograd.grad(loss, p)
        assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert F.mse_loss(p, t).item() == pytest.approx(mse_loss(p, t).item())
