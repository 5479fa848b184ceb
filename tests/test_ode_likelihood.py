"""The probability-flow ODE likelihood against closed forms for Gaussian data."""
import json
import math

import numpy as np
import pytest
import torch

from diffbits.bound import data_to_signal, signal_to_data
from diffbits.cli import main
from diffbits.config import RunConfig, apply_overrides
from diffbits.ode_likelihood import _noise, ode_bpd, ode_nll, pf_ode_drift
from diffbits.samplers import ddim
from diffbits.schedules import FixedLinear, MonotoneNet, alpha_sigma
from diffbits.train import train
from diffbits.vdm import VDM

from .test_train import TINY

D, K = 4, 17


class GaussianDenoiser:
    """Exact ``E[eps | z_t]`` for data ``y ~ N(mu, R diag(s^2) R^T)``: the VP marginal is
    ``z_t ~ N(alpha mu, V_t)``, ``V_t = R diag(alpha^2 s^2 + sigma^2) R^T``, and
    ``eps_hat = sigma V_t^{-1} (z - alpha mu)``."""

    def __init__(self, mu, s, R):
        self.mu, self.s, self.R = mu, s, R

    def lam(self, gamma):  # eigenvalues of V_t, (B, D)
        alpha, sigma = alpha_sigma(gamma)
        return alpha[:, None] ** 2 * self.s**2 + sigma[:, None] ** 2

    def __call__(self, z, gamma):
        alpha, sigma = alpha_sigma(gamma)
        w = (z - alpha[:, None] * self.mu) @ self.R
        return sigma[:, None] * (w / self.lam(gamma)) @ self.R.T

    def log_marginal(self, z, gamma):
        """``log N(z; alpha mu, V_t)``."""
        alpha, _ = alpha_sigma(gamma)
        w, lam = (z - alpha[:, None] * self.mu) @ self.R, self.lam(gamma)
        return -0.5 * ((w**2 / lam).sum(-1) + lam.log().sum(-1) + D * math.log(2 * math.pi))

    def closed_form_nll(self, y, schedule):
        """``-log p(y)`` of eqs. (3)-(5): the flow is affine, ``z_1 - alpha_1 mu =
        V_1^{1/2} V_0^{-1/2} (z_0 - alpha_0 mu)`` with ``z_0 = alpha_0 y``; prior N(0, I)."""
        g = torch.stack([schedule.gamma_0, schedule.gamma_1]).to(y.dtype)
        (a0, a1), lam = alpha_sigma(g)[0], self.lam(g)  # lam: (2, D)
        w1 = ((a0 * (y - self.mu)) @ self.R) * (lam[1] / lam[0]).sqrt()
        z1 = a1 * self.mu + w1 @ self.R.T
        log_prior = -0.5 * (z1**2).sum(-1) - 0.5 * D * math.log(2 * math.pi)
        return -(log_prior + 0.5 * (lam[1].log() - lam[0].log()).sum() + D * a0.log())


def gaussian_model(gamma_1=5.0, rotate=True, schedule=None, s=None):
    g = torch.Generator().manual_seed(1)
    mu = torch.tensor([0.3, -0.5, 0.1, 0.6], dtype=torch.float64)
    s = torch.tensor([0.5, 0.3, 0.4, 0.25], dtype=torch.float64) if s is None else s
    R = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0] if rotate else torch.eye(D).double()
    den = GaussianDenoiser(mu, s, R)
    model = VDM(den, schedule or FixedLinear(-13.3, gamma_1), K, (D,)).double()
    return model, den


def sample_gaussian(den, n, seed=0):
    e = torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return den.mu + (e * den.s) @ den.R.T


def test_exact_trace_matches_the_closed_form_gaussian_likelihood():
    model, den = gaussian_model()
    y = sample_gaussian(den, 8)
    nats, nfe = ode_nll(model, y, exact_trace=True)
    assert nats.shape == (8, 1) and nfe > 0
    assert (nats[:, 0] - den.closed_form_nll(y, model.schedule)).abs().max() / D < 1e-4
    # With alpha_1 ~ 0 the prior N(0, I) is the true marginal at t = 1, so the ODE density is
    # the data's own: N(mu, Sigma + e^gamma_0 I), N(mu, Sigma) up to O(alpha_1) = 5e-5 nats.
    model, den = gaussian_model(gamma_1=20.0)
    nats, _ = ode_nll(model, y, exact_trace=True)
    cov = den.R @ torch.diag(den.s**2) @ den.R.T
    exact = -torch.distributions.MultivariateNormal(den.mu, cov).log_prob(y)
    assert (nats[:, 0] - exact).abs().max() / D < 1e-4


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(noise):
    model, den = gaussian_model()
    y = sample_gaussian(den, 4, seed=2)
    exact = den.closed_form_nll(y, model.schedule)
    P = 128
    nats, _ = ode_nll(model, y, probes=P, noise=noise, generator=torch.Generator().manual_seed(0))
    assert nats.shape == (4, P)
    mean, se = nats.mean(1), nats.std(1) / math.sqrt(P)
    assert (nats.std(1) > 0.1).all()  # a rotated covariance: the probes do vary
    assert ((mean - exact).abs() < 4 * se).all(), ((mean - exact) / se)
    # Probe by probe: the solve integrates v^T M v in place of tr M, M = int c(t) d eps_hat/dz dt
    # = R diag(m) R^T with m_i = int 1/2 sigma^2 / (alpha^2 s_i^2 + sigma^2) dgamma
    # = 1/2 [log(s_i^2 + e^gamma)] from gamma_0 to gamma_1; E[v^T M v] = tr M.
    v = _noise((P,) + tuple(y.shape), noise, torch.Generator().manual_seed(0), y.device, y.dtype)
    m = 0.5 * (torch.log(den.s**2 + math.exp(5.0)) - torch.log(den.s**2 + math.exp(-13.3)))
    M = den.R @ torch.diag(m) @ den.R.T
    q = torch.einsum("pbi,ij,pbj->bp", v, M, v)
    assert (nats - (exact[:, None] + M.trace() - q)).abs().max() < 1e-3


@pytest.mark.parametrize("schedule", [FixedLinear(-13.3, 5.0), MonotoneNet(-10.0, 6.0, hidden=16)])
def test_drift_is_the_ddim_derivative(schedule):
    """DDIM is exact in (x, s) for constant eps_hat, so its step's derivative at h = 0 is the
    probability-flow drift, for any network: (ddim(t -> t+h) - ddim(t -> t-h)) / 2h -> f(z, t)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(D + 1, 16), torch.nn.Tanh(), torch.nn.Linear(16, D)).double()
    model = VDM(lambda z, g: net(torch.cat([z, g[:, None] / 10], 1)), schedule, K, (D,)).double()
    z = torch.randn(5, D, dtype=torch.float64)
    with torch.no_grad():
        for t in (0.05, 0.5, 0.93):
            t, h = torch.tensor(t, dtype=torch.float64), 1e-5
            gam = model.schedule(torch.stack([t - h, t, t + h]))
            fd = (ddim(model.eps_hat, z, gam[[1, 2]]) - ddim(model.eps_hat, z, gam[[1, 0]])) / (2 * h)
            f = pf_ode_drift(model, z, t)
            assert torch.allclose(fd, f, rtol=1e-6, atol=1e-8), (fd - f).abs().max()


def test_drift_solves_the_continuity_equation():
    """For Gaussian data, ``d/dt log p_t(z) = -div f - f . grad log p_t`` at any (z, t)."""
    model, den = gaussian_model()
    z = torch.randn(3, D, dtype=torch.float64)
    for t0 in (0.02, 0.4, 0.9):
        t = torch.full((3,), t0, dtype=torch.float64, requires_grad=True)
        zz = z.clone().requires_grad_(True)
        logp = den.log_marginal(zz, model.schedule(t))
        dlogp_dt, grad_z = torch.autograd.grad(logp.sum(), (t, zz))
        f = pf_ode_drift(model, zz, t.detach())
        div = sum(torch.autograd.grad(f[:, i].sum(), zz, retain_graph=True)[0][:, i] for i in range(D))
        rhs = -div - (f * grad_z).sum(-1)
        assert torch.allclose(dlogp_dt, rhs.detach(), rtol=1e-7, atol=1e-9), (dlogp_dt, rhs)


def test_dequantised_bits_bound_the_discrete_nll():
    """Eq. (6) for Gaussian data: per draw u the ODE bits equal the closed form; their
    expectation over u (analytic for a Gaussian) lies above -log2 P(x) of the bins, by a
    small Jensen gap."""
    s = torch.tensor([0.5, 0.3, 0.4, 0.35], dtype=torch.float64)
    model, den = gaussian_model(gamma_1=20.0, rotate=False, s=s)
    x = signal_to_data(sample_gaussian(den, 6, seed=3), K)
    u = (2 * torch.rand(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64) - 1) / K
    bpd, _ = ode_bpd(model, x, u=u, exact_trace=True)
    f = data_to_signal(x, K, torch.float64)
    closed = (den.closed_form_nll(f + u, model.schedule) + D * math.log(K / 2)) / (D * math.log(2))
    assert (bpd[:, 0] - closed).abs().max() < 1e-4
    # E_u[-log N(f + u; mu, s^2)] = 0.5 ((f - mu)^2 + 1/(3K^2)) / s^2 + log(s sqrt(2 pi)), per dim
    e_nats = (0.5 * ((f - den.mu) ** 2 + 1 / (3 * K**2)) / s**2 + torch.log(s * math.sqrt(2 * math.pi))).sum(-1)
    e_bits = (e_nats + D * math.log(K / 2)) / (D * math.log(2))
    normal = torch.distributions.Normal(den.mu, s)  # P(x): the Gaussian's mass on x's bin
    discrete_bits = -torch.log2(normal.cdf(f + 1 / K) - normal.cdf(f - 1 / K)).sum(-1) / D
    gap = e_bits - discrete_bits  # Jensen: >= 0, about Var_u[log p] / 2 per dim
    assert (gap > 0).all() and (gap < 0.05).all(), gap
    # and the ODE's mean over many draws of u agrees with the analytic expectation
    n = 64
    xs = x.repeat_interleave(n, 0)
    bpd, _ = ode_bpd(model, xs, exact_trace=True, generator=torch.Generator().manual_seed(5), rtol=1e-6, atol=1e-6)
    per = bpd[:, 0].view(6, n)
    se = per.std(1) / math.sqrt(n)
    assert ((per.mean(1) - e_bits).abs() < 4 * se + 1e-4).all()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = apply_overrides(RunConfig(), TINY)
    cfg.train.steps = 3
    path = tmp_path_factory.mktemp("ode") / "run"
    train(cfg, path, progress=False)
    return path


def test_cli_eval_ode(run, capsys):
    assert main(["eval", str(run), "--method", "ode", "--json", "--data", "digits[:8]", "--hutchinson", "2",
                 "--rtol", "1e-3", "--atol", "1e-3"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["method"] == "ode" and res["n"] == 8 and res["nfe"] > 0
    assert np.isfinite(res["bpd"]) and np.isfinite(res["stderr"]) and np.isfinite(res["hutchinson_std_bpd"])
    assert main(["eval", str(run), "--method", "ode", "--data", "digits[:4]", "--rtol", "1e-3", "--atol", "1e-3"]) == 0
    assert "upper bound" in capsys.readouterr().out
    assert main(["eval", str(run), "--method", "ode", "--T", "10"]) == 2
    assert "--method bound" in capsys.readouterr().err
    assert main(["eval", str(run), "--json", "--data", "digits[:8]"]) == 0  # the bound, as before
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"prior_bpd", "recon_bpd", "diffusion_bpd"} <= set(res) and "method" not in res
