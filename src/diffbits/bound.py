"""The variational bound of a diffusion model, term by term (docs/bound.md).

Everything is in nats per example, summed over the D dimensions of one example;
``nats_to_bpd`` is the one place that converts to bits per dimension.
Terms: ``prior`` = KL(q(z_1|x) || N(0, I)), ``recon`` = -log p(x | z_0),
``diffusion`` = continuous-time (T = None) or discrete-time (T steps) loss.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from .tensors import sum_dims

__all__ = [
    "BoundTerms",
    "nats_to_bpd",
    "data_to_signal",
    "signal_to_data",
    "bin_centres",
    "antithetic_times",
    "prior_kl",
    "recon_nll",
    "diffusion_continuous",
    "diffusion_discrete",
]

# Above this many levels the K-way softmax is replaced by a discretised Gaussian.
SOFTMAX_MAX_LEVELS = 1024
# The softmax sums only over bins within reach of the nearest one: every bin left out has a
# logit at least this far below the largest, so it changes log p by less than exp(-50).
RECON_TAIL = 50.0


def nats_to_bpd(nats: Tensor, dims: int) -> Tensor:
    """Nats per example -> bits per dimension."""
    return nats / (dims * math.log(2))


@dataclass
class BoundTerms:
    """Per-example terms of the bound, each of shape (B,)."""

    prior: Tensor  # nats
    recon: Tensor  # nats
    diffusion: Tensor  # nats
    dims: int

    @property
    def total(self) -> Tensor:
        """The negative ELBO in nats per example."""
        return self.prior + self.recon + self.diffusion

    @property
    def bpd(self) -> Tensor:
        return nats_to_bpd(self.total, self.dims)

    def bpd_terms(self) -> dict[str, Tensor]:
        return {
            "prior": nats_to_bpd(self.prior, self.dims),
            "recon": nats_to_bpd(self.recon, self.dims),
            "diffusion": nats_to_bpd(self.diffusion, self.dims),
        }


def data_to_signal(x: Tensor, levels: int, dtype: torch.dtype | None = None) -> Tensor:
    """``f(x) = (2x + 1)/K - 1``: integer levels to bin centres in (-1, 1)."""
    return (2 * x.to(dtype or torch.get_default_dtype()) + 1) / levels - 1


def signal_to_data(f: Tensor, levels: int) -> Tensor:
    """Nearest bin: the inverse of ``data_to_signal`` and the decoder's argmax."""
    return torch.round((f + 1) * levels / 2 - 0.5).clamp(0, levels - 1).long()


def bin_centres(levels: int, device=None, dtype=None) -> Tensor:
    return data_to_signal(torch.arange(levels, device=device), levels, dtype)


def antithetic_times(batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """Low-discrepancy times ``t_i = (u + i/B) mod 1`` for one ``u ~ U(0, 1)``."""
    u = torch.rand((), generator=generator, device=generator.device if generator else device).to(device)
    return torch.remainder(u + torch.arange(batch, device=device) / batch, 1.0)


def prior_kl(f: Tensor, gamma_1: Tensor) -> Tensor:
    """``KL(N(alpha_1 f, sigma_1^2) || N(0, 1))`` summed over dimensions."""
    alpha_sq, sigma_sq = torch.sigmoid(-gamma_1), torch.sigmoid(gamma_1)
    log_sigma_sq = F.logsigmoid(gamma_1)
    return 0.5 * sum_dims(alpha_sq * f**2 + sigma_sq - log_sigma_sq - 1)


def _log_bin_prob_gaussian(x: Tensor, mean: Tensor, scale: Tensor, levels: int) -> Tensor:
    """``log P(bin x)`` under N(mean, scale^2) discretised on the K bins of (-1, 1);
    the outer bins extend to infinity. Stable in both tails."""
    centre = data_to_signal(x, levels, mean.dtype)
    half = 1.0 / levels
    lo = torch.where(x == 0, torch.full_like(centre, -math.inf), centre - half)
    hi = torch.where(x == levels - 1, torch.full_like(centre, math.inf), centre + half)
    a, b = (lo - mean) / scale, (hi - mean) / scale
    # Use the upper tail where the bin lies right of the mean: Phi(b)-Phi(a) = Phi(-a)-Phi(-b).
    flip = a > 0
    a, b = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    gap = -torch.expm1((log_a - log_b).clamp(max=0.0))  # 1 - Phi(a)/Phi(b), in [0, 1]
    return log_b + torch.log(gap.clamp_min(torch.finfo(gap.dtype).tiny))


def _log_softmax_bins(x: Tensor, mean: Tensor, precision: Tensor, levels: int) -> Tensor:
    """``log softmax_k(-precision/2 (mean - f_k)^2)`` at ``k = x``, summing over the bins
    within ``reach`` of the nearest one (all K when that is most of them): a bin ``j`` further
    away has a logit below the nearest one's by ``precision/2 ((j - 1/2) 2/K)^2 > RECON_TAIL``."""
    width = 2.0 / levels
    reach = math.ceil(math.sqrt(2 * RECON_TAIL / float(precision.detach())) / width + 0.5)
    if 2 * reach + 1 >= levels:
        centres = bin_centres(levels, device=mean.device, dtype=mean.dtype)
        logits = -0.5 * precision * (mean.unsqueeze(-1) - centres) ** 2
        return logits.gather(-1, x.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
    start = (signal_to_data(mean.detach(), levels) - reach).clamp(0, levels - 1 - 2 * reach)
    bins = start.unsqueeze(-1) + torch.arange(2 * reach + 1, device=mean.device)
    logits = -0.5 * precision * (mean.unsqueeze(-1) - data_to_signal(bins, levels, mean.dtype)) ** 2
    logit_x = -0.5 * precision * (mean - data_to_signal(x, levels, mean.dtype)) ** 2
    outside = (x < start) | (x > start + 2 * reach)  # x's own bin always counts
    extra = torch.where(outside, logit_x, torch.full_like(logit_x, -math.inf))
    return logit_x - torch.logsumexp(torch.cat([logits, extra.unsqueeze(-1)], -1), -1)


def recon_nll(x: Tensor, z_0: Tensor, gamma_0: Tensor, levels: int, method: str = "auto") -> Tensor:
    """``-log p(x | z_0)`` summed over dimensions.

    ``softmax``: ``p(x_i = k | z_0) ∝ exp(-0.5 exp(-gamma_0) (z_0/alpha_0 - f_k)^2)`` over
    the K bin centres. ``gaussian``: N(z_0/alpha_0, exp(gamma_0)) integrated over each bin
    (for large K such as 16-bit audio). ``auto`` picks softmax up to 1024 levels.
    """
    if method == "auto":
        method = "softmax" if levels <= SOFTMAX_MAX_LEVELS else "gaussian"
    alpha_0 = torch.sigmoid(-gamma_0).sqrt()
    mean = z_0 / alpha_0
    if method == "softmax":
        logp = _log_softmax_bins(x, mean, torch.exp(-gamma_0), levels)
    elif method == "gaussian":
        logp = _log_bin_prob_gaussian(x, mean, torch.exp(0.5 * gamma_0), levels)
    else:
        raise ValueError(f"unknown reconstruction method {method!r}; use auto, softmax or gaussian")
    return -sum_dims(logp)


def diffusion_continuous(eps_error: Tensor, dgamma_t: Tensor) -> Tensor:
    """``0.5 gamma'(t) ||eps - eps_hat||^2`` (T = infinity), from ``eps_error = ||eps - eps_hat||^2``."""
    return 0.5 * dgamma_t * eps_error


def diffusion_discrete(eps_error: Tensor, gamma_t: Tensor, gamma_s: Tensor, T: int) -> Tensor:
    """``0.5 T expm1(gamma_t - gamma_s) ||eps - eps_hat||^2``, ``s`` the level one step before ``t``."""
    return 0.5 * T * torch.expm1(gamma_t - gamma_s) * eps_error
