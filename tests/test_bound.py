import math

import numpy as np
import pytest
import torch
from scipy import stats

import diffbits
from diffbits import bound as B
from diffbits.nets import ResidualMLP
from diffbits.schedules import Cosine, FixedLinear, MonotoneNet

from .helpers import ExactCategoricalDenoiser, entropy_bits, sample_categorical


def test_prior_kl_equals_closed_form():
    f = torch.rand(5, 7, dtype=torch.float64) * 2 - 1
    gamma_1 = torch.tensor(3.0, dtype=torch.float64)
    a, s = torch.sigmoid(-gamma_1).sqrt(), torch.sigmoid(gamma_1).sqrt()
    q = torch.distributions.Normal(a * f, s)
    p = torch.distributions.Normal(torch.zeros_like(f), torch.ones_like(f))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    torch.testing.assert_close(B.prior_kl(f, gamma_1), expected)


def test_softmax_reconstruction_equals_closed_form():
    levels, gamma_0 = 5, torch.tensor(-3.0, dtype=torch.float64)
    x = torch.randint(0, levels, (3, 6))
    z_0 = torch.randn(3, 6, dtype=torch.float64)
    alpha = math.sqrt(1 / (1 + math.exp(gamma_0.item())))
    centres = np.array([(2 * k + 1) / levels - 1 for k in range(levels)])
    expected = np.zeros(3)
    for b in range(3):
        for i in range(6):
            logits = -0.5 * math.exp(-gamma_0.item()) * (z_0[b, i].item() / alpha - centres) ** 2
            expected[b] -= logits[x[b, i]] - np.log(np.exp(logits).sum())
    torch.testing.assert_close(B.recon_nll(x, z_0, gamma_0, levels, "softmax"), torch.from_numpy(expected))


def test_gaussian_reconstruction_equals_cdf_differences():
    levels, gamma_0 = 9, torch.tensor(-1.0, dtype=torch.float64)
    x = torch.arange(levels).view(1, -1).repeat(4, 1)
    z_0 = torch.randn(4, levels, dtype=torch.float64) * 0.3
    alpha, scale = math.sqrt(1 / (1 + math.exp(-1.0))), math.exp(-0.5)
    edges = np.linspace(-1, 1, levels + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    m = z_0.numpy() / alpha
    p = stats.norm.cdf((edges[1:] - m) / scale) - stats.norm.cdf((edges[:-1] - m) / scale)
    expected = -np.log(p).sum(1)
    torch.testing.assert_close(B.recon_nll(x, z_0, gamma_0, levels, "gaussian"), torch.from_numpy(expected))


def test_gaussian_reconstruction_is_stable_far_in_the_tails():
    x = torch.tensor([[0, 1, 65534, 65535]])
    z_0 = torch.tensor([[0.9, 0.9, -0.9, -0.9]])
    nll = B.recon_nll(x, z_0, torch.tensor(-12.0), 65536, "gaussian")
    assert torch.isfinite(nll).all() and nll.item() > 1000


def test_bpd_is_nats_over_dims_ln2():
    t = B.BoundTerms(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0]), dims=10)
    assert t.bpd.item() == pytest.approx(6.0 / (10 * math.log(2)))


def test_antithetic_times_are_evenly_spaced():
    t = torch.sort(B.antithetic_times(8, torch.Generator().manual_seed(3))).values
    torch.testing.assert_close(torch.diff(t), torch.full((7,), 1 / 8))
    assert t.min() >= 0 and t.max() < 1


def _tiny_model(schedule, levels=4, dim=16, variance_min=True):
    torch.manual_seed(0)
    net = ResidualMLP(dim, width=32, depth=2, fourier_periods=[2 / levels])
    torch.nn.init.normal_(net.out.weight, std=0.05)  # not the identity: a real, imperfect denoiser
    return diffbits.VDM(net, schedule, levels=levels, data_shape=(dim,), variance_min=variance_min)


def test_discrete_time_bound_converges_to_continuous():
    model = _tiny_model(FixedLinear(-10.0, 6.0))
    x = torch.randint(0, 4, (64, 16))
    t, eps, eps_0 = torch.rand(64), torch.randn(64, 16), torch.randn(64, 16)
    with torch.no_grad():
        cont = model.bound(x, t=t, eps=eps, eps_0=eps_0).diffusion
        gaps = [(model.bound(x, T=T, t=t, eps=eps, eps_0=eps_0).diffusion - cont).abs().max().item()
                for T in (10, 100, 1000, 10000)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps
    assert gaps[-1] < 1e-2 * cont.abs().mean().item()


@pytest.mark.parametrize("other", [Cosine(-10.0, 6.0), MonotoneNet(-10.0, 6.0)])
def test_continuous_bound_is_invariant_to_schedule_interior(other):
    """Same endpoints, same noise eps for every t: the integral over t of the diffusion
    term is an integral over gamma, whatever the path (docs/schedules.md eq. 9; docs/bound.md eq. 9)."""
    torch.manual_seed(1)
    if isinstance(other, MonotoneNet):
        with torch.no_grad():
            other.w2.mul_(4)
            other.w3.mul_(2000)  # strongly non-linear interior
    x = torch.randint(0, 4, (4, 16))
    eps, eps_0 = torch.randn(4, 16, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64)
    n = 4001
    t = torch.linspace(0, 1, n, dtype=torch.float64)

    def integral(sched):
        model = _tiny_model(sched).double()
        with torch.no_grad():
            d = model.bound(x.repeat_interleave(n, 0), t=t.repeat(4), eps=eps.repeat_interleave(n, 0),
                            eps_0=eps_0.repeat_interleave(n, 0)).diffusion.view(4, n)
        return torch.trapezoid(d, t, dim=1)

    ref = integral(FixedLinear(-10.0, 6.0))
    torch.testing.assert_close(integral(other), ref, rtol=2e-3, atol=1e-3)


def test_exact_denoiser_bound_is_close_to_the_entropy(categorical):
    """Data of known entropy, the exact denoiser, the public API: bound within 0.02 bits/dim."""
    sched = diffbits.schedules.FixedLinear(gamma_0=-10.0, gamma_1=10.0)
    model = diffbits.VDM(ExactCategoricalDenoiser(categorical), sched, levels=4, data_shape=(64,))
    x = sample_categorical(categorical, 4000)
    with torch.no_grad():
        bpd = model.bound(x, generator=torch.Generator().manual_seed(0)).bpd
    h = entropy_bits(categorical)
    se = bpd.std().item() / math.sqrt(len(bpd))
    assert h - 3 * se <= bpd.mean().item() <= h + 0.02, (bpd.mean().item(), h, se)


def test_discrete_time_exact_denoiser_bound_is_close_to_the_entropy(categorical):
    sched = diffbits.schedules.FixedLinear(gamma_0=-10.0, gamma_1=10.0)
    model = diffbits.VDM(ExactCategoricalDenoiser(categorical), sched, levels=4, data_shape=(64,))
    x = sample_categorical(categorical, 4000, seed=1)
    with torch.no_grad():
        bpd = model.bound(x, T=500, generator=torch.Generator().manual_seed(0)).bpd
    h = entropy_bits(categorical)
    se = bpd.std().item() / math.sqrt(len(bpd))
    assert h - 3 * se <= bpd.mean().item() <= h + 0.02


def _grads(model, x, t, eps, eps_0):
    model.zero_grad()
    model.bound(x, t=t, eps=eps, eps_0=eps_0).total.mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_variance_minimisation_changes_only_the_interior_gradients():
    x = torch.randint(0, 4, (32, 16))
    t, eps, eps_0 = (torch.rand(32, dtype=torch.float64), torch.randn(32, 16, dtype=torch.float64),
                     torch.randn(32, 16, dtype=torch.float64))
    on = _tiny_model(MonotoneNet(-10.0, 6.0), variance_min=True).double()
    off = _tiny_model(MonotoneNet(-10.0, 6.0), variance_min=False).double()
    off.load_state_dict(on.state_dict())
    g_on, g_off = _grads(on, x, t, eps, eps_0), _grads(off, x, t, eps, eps_0)
    interior = {"schedule.w1", "schedule.b1", "schedule.w2", "schedule.b2", "schedule.w3"}
    for name in g_on:
        if name in interior:
            assert not torch.allclose(g_on[name], g_off[name]), name
        else:
            torch.testing.assert_close(g_on[name], g_off[name], msg=name)

    # ... and the interior gradient is that of mean(L_diff^2), computed directly
    off.zero_grad()
    d = off.bound(x, t=t, eps=eps, eps_0=eps_0).diffusion
    params = [dict(off.named_parameters())[n] for n in sorted(interior)]
    direct = torch.autograd.grad((d**2).mean(), params)
    for n, g in zip(sorted(interior), direct):
        torch.testing.assert_close(g_on[n], g, rtol=1e-9, atol=1e-12)


def test_bound_rejects_wrong_inputs():
    model = _tiny_model(FixedLinear())
    with pytest.raises(ValueError, match="shape"):
        model.bound(torch.zeros(2, 15, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model.bound(torch.zeros(2, 16))


def test_any_callable_is_a_denoiser():
    model = diffbits.VDM(lambda z, g: torch.zeros_like(z), FixedLinear(), levels=4, data_shape=(3, 5, 5))
    terms = model.bound(torch.randint(0, 4, (2, 3, 5, 5)))
    for v in (terms.prior, terms.recon, terms.diffusion, terms.bpd):
        assert v.shape == (2,) and torch.isfinite(v).all()


@pytest.mark.parametrize("levels", [2, 17, 256])
@pytest.mark.parametrize("gamma_0", [-13.3, -9.0, -4.0, 1.0])
def test_softmax_reconstruction_over_nearby_bins_equals_the_full_softmax(levels, gamma_0):
    gen = torch.Generator().manual_seed(levels)
    x = torch.randint(0, levels, (64, 50), generator=gen)
    g0 = torch.tensor(gamma_0, dtype=torch.float64)
    alpha_0, sigma_0 = torch.sigmoid(-g0).sqrt(), torch.sigmoid(g0).sqrt()
    f = B.data_to_signal(x, levels, torch.float64)
    z_0 = alpha_0 * f + sigma_0 * torch.randn(x.shape, generator=gen, dtype=torch.float64)
    z_0[0] = alpha_0 * torch.linspace(-1.5, 1.5, 50, dtype=torch.float64)  # outside the data range too
    z_0[1] = -z_0[1]  # far from its own bin: x outside the window
    mean = z_0 / alpha_0
    logits = -0.5 * torch.exp(-g0) * (mean.unsqueeze(-1) - B.bin_centres(levels, dtype=torch.float64)) ** 2
    full = -(logits.gather(-1, x.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)).sum(1)
    torch.testing.assert_close(B.recon_nll(x, z_0, g0, levels, "softmax"), full, rtol=1e-12, atol=1e-9)
