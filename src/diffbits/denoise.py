"""Denoising with a trained VDM: an image read as ``y = x + noise_sigma * eta`` is a point on
the model's own diffusion path.

In signal units ``f = (2x + 1)/K - 1`` (``bound.data_to_signal``) the noise has standard
deviation ``s = 2 noise_sigma / K``. The diffusion path's ``z_t = alpha_t f + sigma_t eps``
divided by ``alpha_t`` is ``f + exp(gamma_t / 2) eps``, so ``y`` matches the level
``gamma = 2 log s`` and ``z_t = alpha_t y_f`` exactly. From there:

- ``posterior_mean``: one network call, ``E[x | y] ~ (z_t - sigma_t eps_hat) / alpha_t``
  (clipped to [-1, 1]), in float levels and rounded to the nearest level;
- ``posterior_samples``: the reverse chain from that level down to ``gamma_0`` with any
  sampler of ``samplers.SAMPLERS`` on a grid that starts at the matched level
  (``grid_from``); the ancestral sampler draws from ``p(x | y)``, the deterministic ones map
  ``y`` to one restoration along the probability-flow ODE.

A noise level outside the schedule's ``[gamma_0, gamma_1]`` is refused (``NoiseLevelError``):
the network was never trained there. ``psnr`` is in the data's units, peak ``K - 1``.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from . import bound as B
from .errors import NoiseLevelError
from .grids import Grid, fixed_grid, gamma_of, gamma_to_t
from .samplers import get_sampler
from .schedules import alpha_sigma
from .tensors import randn_like

__all__ = ["NoiseLevelError", "noise_gamma", "observe", "posterior_mean", "posterior_samples", "grid_from",
           "add_noise", "psnr", "eps_fn_of"]


def _check_model(model) -> None:
    from .vdm import VDM

    if not isinstance(model, VDM):
        raise ValueError(f"denoising and inpainting need a Gaussian diffusion model (model.process=gaussian), "
                         f"not {type(model).__name__}")


def eps_fn_of(model, n: int, cond: Tensor | None = None, guidance: float = 1.0) -> Callable[[Tensor, Tensor], Tensor]:
    """``eps_fn(z, gamma)`` of the model for ``n`` examples, with classifier-free ``guidance``
    toward the labels ``cond`` (one, or one per example); a conditional model without labels
    uses its "no label" class (the network's own default)."""
    if cond is None:
        if guidance != 1.0:
            raise ValueError("guidance needs class labels (cond)")
        return model.guided_eps(None)
    cond = torch.as_tensor(cond, device=model.schedule.gamma_0.device).long()
    if cond.numel() not in (1, n):
        raise ValueError(f"{cond.numel()} labels for {n} examples (give one, or one per example)")
    return model.guided_eps(cond.reshape(-1).expand(n), guidance)


def _levels_of(gamma: float, levels: int) -> float:
    """The noise standard deviation, in levels, of the path's level ``gamma``."""
    return levels / 2 * math.exp(gamma / 2)


def noise_gamma(model, noise_sigma: float) -> float:
    """The level ``gamma = 2 log(2 noise_sigma / K)`` of Gaussian noise of std ``noise_sigma``
    (in levels); ``NoiseLevelError`` unless ``gamma_0 <= gamma <= gamma_1`` of the model."""
    _check_model(model)
    if not math.isfinite(noise_sigma) or noise_sigma < 0:
        raise NoiseLevelError(f"noise_sigma must be a non-negative number of levels, got {noise_sigma}")
    g0, g1 = (float(g) for g in gamma_of(model.schedule, torch.tensor([0.0, 1.0])))
    k = model.levels
    lo, hi = _levels_of(g0, k), _levels_of(g1, k)
    if noise_sigma == 0 or 2 * math.log(2 * noise_sigma / k) < g0:
        raise NoiseLevelError(f"too little noise for this model: noise_sigma {noise_sigma:g} levels is below its "
                              f"smallest noise level {lo:.4g} levels (gamma_0 = {g0:.3f}); the image is already "
                              f"as clean as the model can tell")
    gamma = 2 * math.log(2 * noise_sigma / k)
    if gamma > g1:
        raise NoiseLevelError(f"too much noise for this model: noise_sigma {noise_sigma:g} levels is above its "
                              f"largest noise level {hi:.4g} levels (gamma_1 = {g1:.3f})")
    return gamma


def observe(model, y: Tensor, noise_sigma: float) -> tuple[Tensor, float]:
    """``(z_t, gamma)``: the noisy data ``y`` (levels, any numbers, (B, *data_shape)) as the
    model's latent at the matched level, ``z_t = alpha_t ((2y + 1)/K - 1)``."""
    gamma = noise_gamma(model, noise_sigma)
    y = torch.as_tensor(y)
    if tuple(y.shape[1:]) != model.data_shape:
        raise ValueError(f"expected data of shape (B, {', '.join(map(str, model.data_shape))}), got {tuple(y.shape)}")
    ref = model.schedule.gamma_0
    y_f = B.data_to_signal(y.to(ref.device), model.levels, ref.dtype)
    alpha, _ = alpha_sigma(torch.tensor(gamma, dtype=torch.float64))
    return float(alpha) * y_f, gamma


@torch.no_grad()
def posterior_mean(model, y: Tensor, noise_sigma: float, cond: Tensor | None = None,
                   guidance: float = 1.0) -> tuple[Tensor, Tensor]:
    """``(mean, x)``: the denoised ``y`` in one network call, ``mean`` in float levels (the
    model's ``E[x | y]``, clipped to the data range) and ``x`` its nearest integer levels."""
    z, gamma = observe(model, y, noise_sigma)
    alpha, sigma = (float(v) for v in alpha_sigma(torch.tensor(gamma, dtype=torch.float64)))
    g = torch.full((len(z),), gamma, dtype=z.dtype, device=z.device)
    eps_hat = eps_fn_of(model, len(z), cond, guidance)(z, g)
    f_hat = ((z - sigma * eps_hat) / alpha).clamp(-1, 1)
    mean = (f_hat + 1) * model.levels / 2 - 0.5  # the inverse of data_to_signal, in float levels
    return mean, B.signal_to_data(f_hat, model.levels)


def grid_from(schedule, gamma: float, grid: Grid | str = "uniform-t", steps: int = 250) -> Grid:
    """The grid that starts at ``gamma`` and follows ``grid`` (a ``Grid`` or the name of a fixed
    step schedule with ``steps`` steps over the whole range) below it, down to its last level.
    A first step shorter than half the grid step it cuts is merged into the next one, so that
    no step is tiny (multistep samplers divide by step ratios)."""
    full = fixed_grid(grid, schedule, steps) if isinstance(grid, str) else grid
    gammas, ts = full.gamma, full.t
    if not gamma > float(gammas[-1]):
        raise NoiseLevelError(f"gamma {gamma:.4f} is not above the grid's last level {float(gammas[-1]):.4f}")
    k = int((gammas >= gamma).sum())  # first grid point below gamma
    if k < len(gammas) - 1 and k > 0 and gamma - float(gammas[k]) < 0.5 * float(gammas[k - 1] - gammas[k]):
        k += 1
    t0 = gamma_to_t(schedule, torch.tensor([gamma], dtype=torch.float64))
    t0 = torch.maximum(t0, ts[k:k + 1] + 1e-12)  # strictly above the next time
    info = {**full.info, "start_gamma": gamma, "of": full.method}
    return Grid(torch.cat([t0, ts[k:]]), torch.cat([torch.tensor([gamma], dtype=torch.float64), gammas[k:]]),
                f"{full.method}-from", info)


@torch.no_grad()
def posterior_samples(
    model,
    y: Tensor,
    noise_sigma: float,
    sampler: str = "ancestral",
    grid: Grid | str = "uniform-t",
    steps: int = 250,
    generator: torch.Generator | None = None,
    progress: bool = False,
    cond: Tensor | None = None,
    guidance: float = 1.0,
) -> Tensor:
    """One restoration of each row of ``y``: the reverse chain from the matched level to the
    grid's end (``gamma_0``) with ``sampler`` on ``grid_from(schedule, gamma, grid, steps)``,
    decoded to integer levels. Repeat rows (``y.repeat_interleave(n, 0)``) for n draws each."""
    fn = get_sampler(sampler)
    z, gamma = observe(model, y, noise_sigma)
    g = grid_from(model.schedule, gamma, grid, steps)
    gammas = g.gamma.to(z.device, z.dtype)
    z_end = fn(eps_fn_of(model, len(z), cond, guidance), z, gammas, generator=generator, progress=progress)
    return B.signal_to_data(z_end / alpha_sigma(gammas[-1])[0], model.levels)


def add_noise(x: Tensor, noise_sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + noise_sigma * eta`` in float64 levels (no clipping, no rounding)."""
    x = torch.as_tensor(x).double()
    return x + noise_sigma * randn_like(x, generator)


def psnr(x: Tensor, ref: Tensor, levels: int) -> float:
    """Peak signal-to-noise ratio in dB in the data's units, peak ``K - 1``, from the mean
    squared error over every element of the batch."""
    x, ref = torch.as_tensor(x).double().cpu(), torch.as_tensor(ref).double().cpu()
    if x.shape != ref.shape:
        raise ValueError(f"PSNR of arrays of different shapes {tuple(x.shape)} and {tuple(ref.shape)}")
    mse = float((x - ref).square().mean())
    return math.inf if mse == 0 else 10 * math.log10((levels - 1) ** 2 / mse)
