"""Samplers as pure functions over a decreasing grid of noise levels.

One signature for all (as in k-diffusion): ``sampler(eps_fn, z, gammas, generator=None,
progress=False, callback=None) -> z_end``, where ``eps_fn(z, gamma) -> eps_hat``, ``z`` is the
latent at ``gammas[0]`` (the noisiest level) and ``gammas`` decreases to the final level.
``callback(i, z)`` runs after step i with the latent at ``gammas[i + 1]``; a tensor it returns
replaces that latent (inpainting puts the known pixels back this way, and a multistep solver
keeps its history and its order). Equations: docs/samplers.md. Everything
is in variance-preserving form, ``z = alpha x + sigma eps``, with ``gamma = -log SNR``.
The deterministic ones solve the probability-flow ODE, which in ``x = z / alpha`` and
``s = sigma / alpha = exp(gamma / 2)`` reads ``dx/ds = eps_hat`` (EDM's form).
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import Tensor

from .progress import progress as progress_bar
from .schedules import alpha_sigma
from .tensors import randn_like

EpsFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, Tensor], "Tensor | None"]
Sampler = Callable[..., Tensor]

__all__ = ["ancestral", "ddim", "heun", "dpmpp_2m", "SAMPLERS", "EVALS_PER_STEP", "EULER_LAST", "nfe_budget",
           "sampler_for_nfe", "steps_for_nfe", "get_sampler", "EpsFn", "Callback"]


def _at(gamma: Tensor, z: Tensor) -> Tensor:
    return gamma.to(z.dtype).expand(z.shape[0])


def _steps(gammas: Tensor, progress: bool):
    return progress_bar(range(len(gammas) - 1), desc="sampling", enabled=progress)


def _after(callback: Callback | None, i: int, z: Tensor) -> Tensor:
    out = callback(i, z) if callback is not None else None
    return z if out is None else out


@torch.no_grad()
def ancestral(eps_fn: EpsFn, z: Tensor, gammas: Tensor, generator=None, progress: bool = False,
              callback: Callback | None = None) -> Tensor:
    """VDM's ancestral sampler, from t to s < t (VDM, Kingma et al. 2021, App. A; docs/samplers.md eq. 2):
    ``c = -expm1(gamma_s - gamma_t)``,
    ``z_s = alpha_s/alpha_t (z_t - sigma_t c eps_hat) + sqrt(sigma_s^2 c) eps``."""
    for i in _steps(gammas, progress):
        gamma_t, gamma_s = gammas[i], gammas[i + 1]
        (alpha_t, sigma_t), (alpha_s, sigma_s) = alpha_sigma(gamma_t), alpha_sigma(gamma_s)
        c = -torch.expm1(gamma_s - gamma_t)
        eps_hat = eps_fn(z, _at(gamma_t, z))
        z = alpha_s / alpha_t * (z - sigma_t * c * eps_hat) + (sigma_s**2 * c).sqrt() * randn_like(z, generator)
        z = _after(callback, i, z)
    return z


@torch.no_grad()
def ddim(eps_fn: EpsFn, z: Tensor, gammas: Tensor, generator=None, progress: bool = False,
              callback: Callback | None = None) -> Tensor:
    """DDIM (eta = 0), i.e. Euler on the probability-flow ODE in ``(x, s)``:
    ``x_hat = (z_t - sigma_t eps_hat) / alpha_t``, ``z_s = alpha_s x_hat + sigma_s eps_hat``."""
    for i in _steps(gammas, progress):
        (alpha_t, sigma_t), (alpha_s, sigma_s) = alpha_sigma(gammas[i]), alpha_sigma(gammas[i + 1])
        eps_hat = eps_fn(z, _at(gammas[i], z))
        z = _after(callback, i, alpha_s * (z - sigma_t * eps_hat) / alpha_t + sigma_s * eps_hat)
    return z


@torch.no_grad()
def heun(eps_fn: EpsFn, z: Tensor, gammas: Tensor, generator=None, progress: bool = False,
              callback: Callback | None = None, euler_last: bool = False) -> Tensor:
    """EDM's second-order Heun step (Karras et al. 2022, Alg. 1) on ``dx/ds = eps_hat``,
    ``s = exp(gamma / 2)``; two network calls per step (the grid never reaches s = 0).
    ``euler_last``: the last step is a single Euler step (= DDIM), as EDM's step to s = 0 is,
    so ``N`` steps cost ``2N - 1`` calls (``sampler_for_nfe`` uses it for an odd budget)."""
    for i in _steps(gammas, progress):
        (alpha_t, _), (alpha_s, _) = alpha_sigma(gammas[i]), alpha_sigma(gammas[i + 1])
        s_t, s_s = (gammas[i] / 2).exp(), (gammas[i + 1] / 2).exp()
        x = z / alpha_t
        d_t = eps_fn(z, _at(gammas[i], z))
        x_euler = x + (s_s - s_t) * d_t
        if euler_last and i == len(gammas) - 2:
            z = _after(callback, i, alpha_s * x_euler)
            continue
        d_s = eps_fn(alpha_s * x_euler, _at(gammas[i + 1], z))
        z = _after(callback, i, alpha_s * (x + (s_s - s_t) * (d_t + d_s) / 2))
    return z


@torch.no_grad()
def dpmpp_2m(eps_fn: EpsFn, z: Tensor, gammas: Tensor, generator=None, progress: bool = False,
              callback: Callback | None = None, euler_last: bool = False) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) in ``lambda = -gamma / 2``: multistep,
    one call per step, the data prediction extrapolated linearly in ``lambda``.
    ``euler_last``: the last step is first order (DPM-Solver-1 = DDIM; diffusers' ``lower_order_final``),
    at the same calls."""
    x0_prev, h_prev = None, None
    for i in _steps(gammas, progress):
        (alpha_t, sigma_t), (alpha_s, sigma_s) = alpha_sigma(gammas[i]), alpha_sigma(gammas[i + 1])
        x0 = (z - sigma_t * eps_fn(z, _at(gammas[i], z))) / alpha_t
        h = (gammas[i] - gammas[i + 1]) / 2
        x0_d = x0
        if x0_prev is not None and not (euler_last and i == len(gammas) - 2):
            r = h_prev / h
            x0_d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        z = _after(callback, i, sigma_s / sigma_t * z - alpha_s * torch.expm1(-h) * x0_d)
        x0_prev, h_prev = x0, h
    return z


SAMPLERS: dict[str, Sampler] = {"ancestral": ancestral, "ddim": ddim, "heun": heun, "dpmpp2m": dpmpp_2m}
EVALS_PER_STEP = {"ancestral": 1, "ddim": 1, "heun": 2, "dpmpp2m": 1}
EULER_LAST = ("heun", "dpmpp2m")  # the samplers whose last step can be first order (``euler_last``)


def get_sampler(name: str, euler_last: bool = False) -> Sampler:
    """The sampler ``name``; with ``euler_last``, Heun or DPM-Solver++(2M) whose last step is
    first order (an Euler step, DDIM)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    if euler_last and name not in EULER_LAST:
        raise ValueError(f"a first-order last step is for {' and '.join(EULER_LAST)}, not {name} "
                         "(whose steps are all first order)")
    return partial(SAMPLERS[name], euler_last=True) if euler_last else SAMPLERS[name]


def nfe_budget(name: str, nfe: int) -> tuple[int, bool]:
    """``(steps, euler_last)`` that spend exactly ``nfe`` network calls with sampler ``name``. Heun
    spends an odd budget's last call on a last Euler step (``euler_last``, EDM's Alg. 1):
    NFE 5 is two Heun steps and one Euler step, where ``nfe // 2`` would leave a call unused."""
    get_sampler(name)
    steps = nfe // EVALS_PER_STEP[name]
    if steps < 1:
        raise ValueError(f"{name} needs at least {EVALS_PER_STEP[name]} network calls")
    euler_last = name == "heun" and nfe % 2 == 1
    return steps + euler_last, euler_last


def sampler_for_nfe(name: str, nfe: int) -> tuple[Sampler, int]:
    """The sampler ``name`` and the grid steps that spend exactly ``nfe`` network calls (``nfe_budget``)."""
    steps, euler_last = nfe_budget(name, nfe)
    return get_sampler(name, euler_last), steps


def steps_for_nfe(name: str, nfe: int) -> int:
    """Grid steps that spend ``nfe`` network calls with ``sampler_for_nfe(name, nfe)``'s sampler."""
    return nfe_budget(name, nfe)[0]
