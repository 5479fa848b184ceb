"""Samplers as pure functions over a decreasing grid of noise levels.

One signature for all (as in k-diffusion): ``sampler(eps_fn, z, gammas, generator=None,
progress=False) -> z_0``, where ``eps_fn(z, gamma) -> eps_hat``, ``z`` is the latent at
``gammas[0]`` (the noisiest level) and ``gammas`` decreases to the final level.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .schedules import alpha_sigma

EpsFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["ancestral", "EpsFn"]


def randn_like(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like ``z``, drawn on the generator's device."""
    dev = generator.device if generator is not None else z.device
    return torch.randn(z.shape, generator=generator, device=dev, dtype=z.dtype).to(z.device)


def _levels(gamma: Tensor, z: Tensor) -> Tensor:
    return gamma.expand(z.shape[0])


@torch.no_grad()
def ancestral(
    eps_fn: EpsFn,
    z: Tensor,
    gammas: Tensor,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Tensor:
    """VDM's ancestral sampler, from t to s < t (SPEC 1):
    ``c = -expm1(gamma_s - gamma_t)``,
    ``z_s = alpha_s/alpha_t (z_t - sigma_t c eps_hat) + sqrt(sigma_s^2 c) eps``."""
    steps = range(len(gammas) - 1)
    for i in tqdm(steps, desc="sampling", disable=not progress, leave=False):
        gamma_t, gamma_s = gammas[i], gammas[i + 1]
        (alpha_t, sigma_t), (alpha_s, sigma_s) = alpha_sigma(gamma_t), alpha_sigma(gamma_s)
        c = -torch.expm1(gamma_s - gamma_t)
        eps_hat = eps_fn(z, _levels(gamma_t, z))
        noise = randn_like(z, generator)
        z = alpha_s / alpha_t * (z - sigma_t * c * eps_hat) + (sigma_s**2 * c).sqrt() * noise
    return z
