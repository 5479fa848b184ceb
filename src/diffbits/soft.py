"""Soft diffusion (docs/soft.md): a denoiser that predicts ``x_0`` under blur-plus-noise corruption,
its per-frequency bound in bits/dim, Soft Score Matching, and the naive and momentum samplers.

The network sees ``x_t`` and the base ``gamma_t``; its output ``F`` gives
``x0_hat = alpha_t x_t - sigma_t F`` (v-prediction when the blur is off).

Bound (blurring diffusion): in the DCT basis each frequency k is a Gaussian diffusion with
``gamma_k(t)``, so the continuous-time diffusion term is
``0.5 E_t sum_k gamma_k'(t) exp(-gamma_k(t)) (u_0 - u0_hat)_k^2`` (VDM eq. 17 per frequency;
``u = DCT f``); the prior is the KL of each frequency at t = 1; at t = 0 there is no blur, so
the reconstruction term is the Gaussian one. With the blur off it is ``VDM.bound`` exactly.

Soft Score Matching (Daras et al.): ``E[w(t) ||C_t (x0_hat - x_0)||^2]``, the error measured
after the corruption, with ``w(t) = gamma'(t) / (2 sigma_t^2)``: that weighting makes it the
diffusion term of the bound when the blur is off. ``loss="elbo"`` trains on the bound itself
(each frequency weighted by ``gamma_k' / gamma'`` on top).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from . import bound as B
from .corruptions import Corruption
from .precision import NetCall
from .progress import progress as progress_bar
from .schedules import alpha_sigma
from .tensors import append_dims, randn_like, sum_dims

__all__ = ["SoftDiffusion", "naive", "momentum", "SOFT_SAMPLERS", "wasserstein_grid"]


class SoftDiffusion(nn.Module):
    """``SoftDiffusion(net, corruption, levels)``: ``net(x_t, gamma_t) -> F``."""

    def __init__(self, net: Callable, corruption: Corruption, levels: int, loss: str = "elbo"):
        super().__init__()
        if loss not in ("elbo", "ssm"):
            raise ValueError(f"unknown loss {loss!r}; use elbo or ssm")
        self.denoiser, self.corruption, self.levels, self.loss = net, corruption, int(levels), loss
        self.data_shape = corruption.data_shape
        self.net_call = NetCall()  # the network's precision and layout

    @property
    def schedule(self):
        return self.corruption.schedule

    @property
    def dims(self) -> int:
        return math.prod(self.data_shape)

    def x0_hat(self, x_t: Tensor, t: Tensor) -> Tensor:
        gamma = self.schedule(t)
        alpha, sigma = (append_dims(v, x_t.dim()) for v in alpha_sigma(gamma))
        return alpha * x_t - sigma * self.net_call(self.denoiser, x_t, gamma)

    def bound(self, x: Tensor, T: int | None = None, cond=None, t: Tensor | None = None, eps: Tensor | None = None,
              eps_0: Tensor | None = None, generator: torch.Generator | None = None) -> B.BoundTerms:
        """Per-example terms of the continuous-time bound (nats) for integer data ``x``."""
        if T:
            raise ValueError("blur models have the continuous-time bound only (T = 0)")
        if cond is not None:
            raise ValueError("blur models are unconditional")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"expected data of shape (B, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        c = self.corruption
        if c.variance_exploding:
            raise ValueError("the bound needs the variance-preserving form (its prior is N(0, I))")
        f = B.data_to_signal(x, self.levels, self.schedule.gamma_0.dtype)
        one = torch.ones(len(x), device=x.device)
        u = c.dct(f)
        a2 = c.multiplier(one) ** 2  # per frequency: alpha_1^2 exp(-2 Lambda_k tau_1)
        s2 = torch.sigmoid(self.schedule.gamma_1)
        prior = 0.5 * sum_dims(a2 * u**2 + s2 - torch.log(s2) - 1)
        eps_0 = randn_like(f, generator) if eps_0 is None else eps_0
        gamma_0 = self.schedule.gamma_0
        alpha_0, sigma_0 = alpha_sigma(gamma_0)
        recon = B.recon_nll(x, alpha_0 * f + sigma_0 * eps_0, gamma_0, self.levels)
        t = B.antithetic_times(len(x), generator=generator, device=x.device) if t is None else t
        eps = randn_like(f, generator) if eps is None else eps
        x_t = c(f, t, eps)
        err = u - c.dct(self.x0_hat(x_t, t))
        gamma_k, dgamma_k = c.gamma_freq(t)
        diffusion = 0.5 * sum_dims(dgamma_k * torch.exp(-gamma_k) * err**2)
        return B.BoundTerms(prior=prior, recon=recon, diffusion=diffusion, dims=self.dims)

    def ssm_loss(self, x: Tensor, generator: torch.Generator | None = None, t: Tensor | None = None,
                 eps: Tensor | None = None) -> Tensor:
        """Soft Score Matching, per example: ``w(t) ||C_t (x0_hat - x_0)||^2``, ``w = gamma'/(2 sigma^2)``."""
        c = self.corruption
        f = B.data_to_signal(x, self.levels, self.schedule.gamma_0.dtype)
        t = B.antithetic_times(len(x), generator=generator, device=x.device) if t is None else t
        x_t = c(f, t, randn_like(f, generator) if eps is None else eps)
        gamma, dgamma = self.schedule.gamma_and_derivative(t)
        w = dgamma / (2 * torch.sigmoid(gamma))
        return w * sum_dims(c.apply_C(self.x0_hat(x_t, t) - f, t) ** 2)

    def loss_terms(self, x: Tensor, T: int | None = None, t: Tensor | None = None, eps: Tensor | None = None,
                   eps_0: Tensor | None = None, cond: Tensor | None = None) -> B.BoundTerms:
        """What training minimises: the bound, or with ``loss="ssm"`` its diffusion term swapped
        for Soft Score Matching (on the same ``t`` and ``eps``)."""
        terms = self.bound(x, T=T, cond=cond, t=t, eps=eps, eps_0=eps_0)
        if self.loss == "ssm":
            terms.diffusion = self.ssm_loss(x, t=t, eps=eps)
        return terms

    def forward(self, x: Tensor) -> Tensor:
        """The training loss in bits/dim."""
        return self.loss_terms(x).bpd.mean()

    @torch.no_grad()
    def sample(self, n: int, steps: int = 100, cond=None, generator=None, progress=False, sampler: str = "momentum",
               grid="uniform-t", decode: bool = True, guidance: float = 1.0, euler_last: bool = False) -> Tensor:
        """``steps`` steps on ``grid`` (a ``Grid`` or ``"uniform-t"``), from ``s_1 eta`` at t = 1
        (``VDM.sample``'s signature: ``euler_last`` is Heun's, refused here)."""
        if cond is not None or guidance != 1.0:
            raise ValueError("blur models are unconditional: no labels, no guidance")
        if euler_last:
            raise ValueError("a last Euler step is Heun's; blur models sample with momentum or naive")
        if sampler not in SOFT_SAMPLERS:
            raise ValueError(f"blur models sample with {' or '.join(SOFT_SAMPLERS)}, not {sampler!r}")
        dev = self.schedule.gamma_0.device
        if isinstance(grid, str):
            if grid != "uniform-t":
                raise ValueError(f"blur models take a uniform-t grid or a GRID.json, not {grid!r}")
            ts = torch.linspace(1.0, 0.0, steps + 1, device=dev)
        else:
            ts = grid.t.to(dev, torch.float32)
        x = randn_like(torch.empty((n,) + self.data_shape, device=dev), generator)
        x = x * self.corruption.noise_std(ts[:1])
        x = SOFT_SAMPLERS[sampler](self.x0_hat, self.corruption, x, ts, generator=generator, progress=progress)
        alpha_0 = alpha_sigma(self.schedule.gamma_0)[0]
        return B.signal_to_data(x / alpha_0, self.levels) if decode else x / alpha_0


def _times(t: Tensor, n: int) -> Tensor:
    return t.expand(n)


@torch.no_grad()
def naive(x0_fn, corruption: Corruption, x: Tensor, ts: Tensor, generator=None, progress=False) -> Tensor:
    """``x_{t'} = C_{t'} x0_hat + s_{t'} eta`` (docs/soft.md eq. 11), over decreasing times ``ts``."""
    n = x.shape[0]
    for i in progress_bar(range(len(ts) - 1), desc="naive", enabled=progress):
        t, tn = _times(ts[i], n), _times(ts[i + 1], n)
        x0 = x0_fn(x, t)
        x = corruption.apply_C(x0, tn) + corruption.noise_std(tn) * randn_like(x, generator)
    return x


@torch.no_grad()
def momentum(x0_fn, corruption: Corruption, x: Tensor, ts: Tensor, generator=None, progress=False) -> Tensor:
    """Momentum sampler (docs/soft.md eq. 12): ``y = C_t x0_hat``, ``e = y - x``,
    ``z = x - (s'^2/s^2 - 1) e + sqrt(s^2 - s'^2) eta``, ``x' = z + C_{t'} x0_hat - y``."""
    n = x.shape[0]
    for i in progress_bar(range(len(ts) - 1), desc="momentum", enabled=progress):
        t, tn = _times(ts[i], n), _times(ts[i + 1], n)
        x0 = x0_fn(x, t)
        y = corruption.apply_C(x0, t)
        s2, sn2 = corruption.noise_std(t) ** 2, corruption.noise_std(tn) ** 2
        z = x - (sn2 / s2 - 1) * (y - x) + (s2 - sn2).clamp_min(0).sqrt() * randn_like(x, generator)
        x = z + corruption.apply_C(x0, tn) - y
    return x


SOFT_SAMPLERS = {"naive": naive, "momentum": momentum}


@torch.no_grad()
def wasserstein_grid(corruption: Corruption, f: Tensor, steps: int, probe: int = 512):
    """Times whose marginals are equally far apart in Wasserstein-2 (docs/soft.md eqs. 13-14), under a Gaussian
    approximation per DCT frequency estimated from data ``f`` (signal space, (N, C, *spatial)):
    ``u_t,k ~ N(a_k(t) m_k, a_k(t)^2 v_k + s_t^2)``, so between neighbours
    ``W2^2 = sum_k (a_k - a_k')^2 m_k^2 + (std_k - std_k')^2``. The path's W2 length, cut into
    ``steps`` equal pieces (monotone cubic inverse), gives the grid."""
    from .grids import Grid, gamma_of
    from .score_optimal import equal_cost_times

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    u = corruption.dct(f.double())
    m, v = u.mean(0), u.var(0)
    t = torch.linspace(1.0, 0.0, probe, dtype=torch.float64)
    a = corruption.multiplier(t.to(f.dtype)).double()[:, 0]  # (probe, *spatial)
    s = append_dims(corruption.noise_std(t.to(f.dtype)).double().flatten(), a.dim())
    mean, std = a[:, None] * m, (a[:, None] ** 2 * v + s[:, None] ** 2).sqrt()  # (probe, C, *spatial)
    w2 = ((mean[1:] - mean[:-1]) ** 2 + (std[1:] - std[:-1]) ** 2).flatten(1).sum(1)
    times = equal_cost_times(t, w2, steps)
    grid = Grid(times, gamma_of(corruption.schedule, times), "wasserstein")
    grid.info.update(probe_t=t.tolist(), probe_cost=w2.tolist(), total_w2_length=float(w2.sqrt().sum()))
    return grid
