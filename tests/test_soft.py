"""Blur-plus-noise corruption: the DCT heat equation against direct convolution, its semigroup
law, the per-frequency bound against the Gaussian bound, and the momentum sampler's Gaussian limit."""
import math

import numpy as np
import pytest
import torch

from diffbits.corruptions import DCT, BlurSchedule, Corruption
from diffbits.schedules import FixedLinear
from diffbits.soft import SoftDiffusion, momentum
from diffbits.vdm import VDM


def sched():
    return FixedLinear(-7.0, 5.0)


def heat_by_convolution(x: np.ndarray, tau: float) -> np.ndarray:
    """Reflect each axis (half-sample symmetric, period 2n), convolve circularly with the kernel
    whose DFT is ``exp(-(pi k / n)^2 tau)`` for frequency ``min(k, 2n - k)``, keep the first n."""
    out = x.astype(np.float64)
    for axis, n in ((-2, x.shape[-2]), (-1, x.shape[-1])):
        ext = np.concatenate([out, np.flip(out, axis)], axis)
        k = np.minimum(np.arange(2 * n), 2 * n - np.arange(2 * n))
        kernel = np.real(np.fft.ifft(np.exp(-((np.pi * k / n) ** 2) * tau)))
        shape = [1] * ext.ndim
        shape[axis] = 2 * n
        ext = np.real(np.fft.ifft(np.fft.fft(ext, axis=axis) * np.fft.fft(kernel).reshape(shape), axis=axis))
        out = np.take(ext, np.arange(n), axis=axis)
    return out


@pytest.mark.parametrize("shape", [(7, 7), (6, 9)])
def test_dct_blur_equals_convolution_with_reflecting_boundary(shape):
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    dct = DCT(shape).double()
    for tau in (0.3, 2.0):
        np.testing.assert_allclose(dct.heat(x, tau).numpy(), heat_by_convolution(x.numpy(), tau), atol=1e-10)


def test_blur_is_a_heat_semigroup_and_identity_at_zero():
    dct = DCT((8, 5)).double()
    x = torch.randn(3, 1, 8, 5, dtype=torch.float64)
    torch.testing.assert_close(dct.heat(dct.heat(x, 0.7), 1.1), dct.heat(x, 1.8))
    torch.testing.assert_close(dct.heat(x, 0.0), x)
    c = Corruption(sched(), (1, 8, 5), BlurSchedule(3.0), variance_exploding=True).double()
    torch.testing.assert_close(c.apply_C(x, torch.zeros(3, dtype=torch.float64)), x)  # C_0 = I
    # the blur only removes energy, more with time, and keeps the mean (frequency 0)
    e = [float(c.apply_C(x, torch.full((3,), t, dtype=torch.float64)).pow(2).sum()) for t in (0.2, 0.5, 1.0)]
    assert e[0] > e[1] > e[2]
    torch.testing.assert_close(c.apply_C(x, torch.ones(3, dtype=torch.float64)).mean((-2, -1)), x.mean((-2, -1)))


class EpsNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, z, gamma):
        return torch.tanh(self.conv(z)) * (1 + 0.1 * gamma.view(-1, 1, 1, 1))


def test_per_frequency_bound_without_blur_is_the_gaussian_bound():
    """The soft model's output ``F`` is v: ``x0_hat = alpha z - sigma F`` equals the eps net's
    ``(z - sigma eps_hat) / alpha`` when ``F = (eps_hat - sigma z) / alpha``. Same draws, same terms."""
    torch.manual_seed(0)
    eps_net = EpsNet()

    def v_net(z, gamma):  # the v that gives the same x0_hat as eps_net: v = (eps - sigma z) / alpha
        a, s = torch.sigmoid(-gamma).sqrt().view(-1, 1, 1, 1), torch.sigmoid(gamma).sqrt().view(-1, 1, 1, 1)
        return (eps_net(z, gamma) - s * z) / a

    shape = (1, 6, 6)
    soft = SoftDiffusion(v_net, Corruption(sched(), shape), levels=17)
    vdm = VDM(eps_net, sched(), levels=17, data_shape=shape)
    x = torch.randint(0, 17, (5,) + shape)
    g = torch.Generator().manual_seed(3)
    t, eps, eps_0 = torch.rand(5, generator=g), torch.randn(5, *shape, generator=g), torch.randn(5, *shape, generator=g)
    a, b = soft.bound(x, t=t, eps=eps, eps_0=eps_0), vdm.bound(x, t=t, eps=eps, eps_0=eps_0)
    for name in ("prior", "recon", "diffusion"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-4, atol=1e-5)


def test_blur_bound_terms_are_finite_and_positive():
    """Blur on: every term of the per-frequency bound is finite and non-negative."""
    shape = (1, 4, 4)
    soft = SoftDiffusion(lambda z, g: torch.zeros_like(z), Corruption(sched(), shape, BlurSchedule(2.0)), levels=17)
    x = torch.randint(0, 17, (8,) + shape)
    terms = soft.bound(x)
    assert torch.isfinite(terms.total).all() and (terms.prior > 0).all() and (terms.diffusion >= 0).all()


def test_momentum_without_blur_is_the_reverse_sde_euler_maruyama_step():
    """Derivation: with ``C_t = I`` (variance exploding, no blur), ``y = x0_hat`` and
    ``x' = x + (1 - s'^2/s^2)(x0_hat - x) + sqrt(s^2 - s'^2) eta = x + (s^2 - s'^2) score + sqrt(s^2 - s'^2) eta``
    with ``score = (x0_hat - x)/s^2``: one Euler-Maruyama step of the reverse VE SDE."""
    c = Corruption(sched(), (1, 5, 5), variance_exploding=True).double()
    x = torch.randn(4, 1, 5, 5, dtype=torch.float64) * 3
    ts = torch.tensor([0.8, 0.6], dtype=torch.float64)
    x0_fn = lambda z, t: 0.3 * torch.tanh(z)  # noqa: E731
    out = momentum(x0_fn, c, x, ts, generator=torch.Generator().manual_seed(5))
    s, sn = (math.exp(float(sched()(t)) / 2) for t in ts)
    eta = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    score = (x0_fn(x, None) - x) / s**2
    torch.testing.assert_close(out, x + (s**2 - sn**2) * score + math.sqrt(s**2 - sn**2) * eta)


def test_samplers_run_and_are_deterministic_under_a_seed():
    shape = (1, 6, 6)
    soft = SoftDiffusion(lambda z, g: 0.1 * z, Corruption(sched(), shape, BlurSchedule(2.0)), levels=17)
    for sampler in ("naive", "momentum"):
        a = soft.sample(3, steps=6, sampler=sampler, generator=torch.Generator().manual_seed(1))
        b = soft.sample(3, steps=6, sampler=sampler, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b) and a.shape == (3,) + shape and a.min() >= 0 and a.max() < 17


def test_cli_trains_evaluates_and_samples_a_blur_model(tmp_path, capsys):
    from diffbits.cli import main

    run = tmp_path / "blur"
    assert main(["train", "--out", str(run), "--process", "blur", "--steps", "3", "--quiet",
                 "--set", "model.width=8", "--set", "model.depth=1", "--set", "train.batch_size=16",
                 "--set", "train.sample_steps=4"]) == 0
    assert main(["eval", str(run), "--json"]) == 0
    assert "bpd" in capsys.readouterr().out
    for sampler in ("momentum", "naive"):
        assert main(["sample", str(run), "--n", "4", "--steps", "4", "--sampler", sampler,
                     "-o", str(tmp_path / f"{sampler}.npy")]) == 0
        assert np.load(tmp_path / f"{sampler}.npy").shape == (4, 1, 8, 8)
    assert main(["sample", str(run), "--n", "4", "--grid", "wasserstein", "--steps", "4", "-o",
                 str(tmp_path / "w.npy")]) == 0
    assert main(["sample", str(run), "--n", "4", "--sampler", "ddim", "-o", str(tmp_path / "x.npy")]) == 2
    assert main(["sample", str(run), "--n", "4", "--grid", "edm", "-o", str(tmp_path / "x.npy")]) == 2


def test_wasserstein_grid_spaces_marginals_equally():
    from diffbits.soft import wasserstein_grid

    c = Corruption(sched(), (1, 8, 8), BlurSchedule(4.0))
    f = torch.rand(256, 1, 8, 8) * 2 - 1
    grid = wasserstein_grid(c, f, 8)
    assert grid.t[0] == 1 and grid.t[-1] == 0 and (grid.t.diff() < 0).all()
    u = c.dct(f.double())
    m, v = u.mean(0), u.var(0)

    def moments(t):
        a = c.multiplier(torch.tensor([t])).double()[0]
        s = float(c.noise_std(torch.tensor([t])))
        return a * m, (a**2 * v + s**2).sqrt()

    fine = torch.linspace(1, 0, 2001, dtype=torch.float64)
    lengths = []  # the W2 length of each step, integrated finely
    for i in range(8):
        ts = fine[(fine <= grid.t[i]) & (fine >= grid.t[i + 1])]
        ts = torch.cat([grid.t[i:i + 1], ts, grid.t[i + 1:i + 2]])
        mom = [moments(float(t)) for t in ts]
        lengths.append(sum(float(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2).sum().sqrt()) for a, b in zip(mom, mom[1:])))
    assert max(lengths) / min(lengths) < 1.05
