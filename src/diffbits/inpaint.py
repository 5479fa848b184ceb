"""Inpainting with a trained VDM: fill the masked pixels consistently with the known ones
(RePaint, Lugmayr et al. 2022; docs/samplers.md).

The reverse chain runs with any sampler of ``samplers.SAMPLERS`` on any grid; after each step
from ``gamma_t`` to ``gamma_s`` the sampler's callback replaces the known pixels by the known
data noised forward to that level, ``z_s = alpha_s f + sigma_s eps``, so a multistep solver
(DPM-Solver++(2M)) keeps its history and Heun its second order. With ``resample = r`` each step
is redone r times: the harmonised ``z_s`` jumps back to ``gamma_t`` through the forward
transition ``q(z_t | z_s)`` (``renoise``) and the step is taken again, which lets the generated
pixels settle in agreement with the known ones; a jump back breaks a multistep solver's
history, so there every step starts afresh (first order). At the end the latent is decoded
and every known pixel is set to its exact input value: known pixels never change, bit for bit.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import bound as B
from .denoise import _check_model, eps_fn_of
from .grids import Grid, fixed_grid
from .progress import progress as progress_bar
from .samplers import get_sampler
from .schedules import alpha_sigma
from .tensors import randn_like

__all__ = ["inpaint", "renoise"]


def renoise(z_s: Tensor, gamma_s: Tensor, gamma_t: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A draw of ``q(z_t | z_s)`` for ``gamma_t > gamma_s`` (variance preserving):
    ``z_t = alpha_t/alpha_s z_s + sqrt(sigma_t^2 - alpha_t^2/alpha_s^2 sigma_s^2) eps``, whose
    variance is ``sigma_t^2 (1 - exp(gamma_s - gamma_t))``."""
    (alpha_t, sigma_t), (alpha_s, _) = alpha_sigma(gamma_t), alpha_sigma(gamma_s)
    c = -torch.expm1(gamma_s - gamma_t)
    return alpha_t / alpha_s * z_s + (sigma_t**2 * c).sqrt() * randn_like(z_s, generator)


def _mask_like(mask, x: Tensor) -> Tensor:
    mask = torch.as_tensor(mask, device=x.device)
    try:
        return torch.broadcast_to(mask != 0, x.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit data of shape {tuple(x.shape)}") from None


@torch.no_grad()
def inpaint(
    model,
    x: Tensor,
    mask: Tensor,
    sampler: str = "ancestral",
    grid: Grid | str = "uniform-t",
    steps: int = 250,
    resample: int = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    cond: Tensor | None = None,
    guidance: float = 1.0,
) -> Tensor:
    """Fill ``x`` (integer levels, (B, *data_shape)) where ``mask`` (broadcastable to ``x``;
    true or non-zero: to fill) with a draw from the model given the other pixels. ``grid`` is a
    ``Grid`` or a fixed step-schedule name with ``steps`` steps; each step is taken
    ``resample + 1`` times; ``cond`` (one label or one per row) and ``guidance`` as in
    ``VDM.guided_eps``. Returns an array like ``x`` (same dtype and device): the input where
    ``mask`` is false, the model's pixels where it is true. Repeat rows for several draws."""
    _check_model(model)
    if resample < 0:
        raise ValueError(f"resample must be 0 or more, got {resample}")
    x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype == torch.bool or x.dtype.is_complex:
        raise TypeError(f"inpaint expects integer levels, got dtype {x.dtype}")
    if tuple(x.shape[1:]) != model.data_shape:
        raise ValueError(f"expected data of shape (B, {', '.join(map(str, model.data_shape))}), got {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= model.levels):
        raise ValueError(f"values span {int(x.min())}..{int(x.max())}, outside the model's {model.levels} levels")
    fill = _mask_like(mask, x)
    fn = get_sampler(sampler)
    ref = model.schedule.gamma_0
    dev = ref.device
    known = B.data_to_signal(x.to(dev), model.levels, ref.dtype)
    m = fill.to(dev)
    if isinstance(grid, str):
        grid = fixed_grid(grid, model.schedule, steps)
    gammas = grid.gamma.to(dev, known.dtype)
    eps_fn = eps_fn_of(model, len(x), cond, guidance)

    def noised(gamma):  # the known pixels at level gamma
        alpha, sigma = alpha_sigma(gamma)
        return alpha * known + sigma * randn_like(known, generator)

    z = randn_like(known, generator)  # the initial noise first, as in VDM.sample
    z = torch.where(m, z, noised(gammas[0]))
    if resample == 0:
        z = fn(eps_fn, z, gammas, generator=generator, progress=progress,
               callback=lambda i, z_s: torch.where(m, z_s, noised(gammas[i + 1])))
    for i in progress_bar(range(len(gammas) - 1) if resample else (), desc="inpainting", enabled=progress):
        pair = gammas[i:i + 2]
        for u in range(resample + 1):
            z_s = torch.where(m, fn(eps_fn, z, pair, generator=generator), noised(pair[1]))
            if u < resample:
                z = renoise(z_s, pair[1], pair[0], generator)
        z = z_s
    out = B.signal_to_data(z / alpha_sigma(gammas[-1])[0], model.levels).to(x.device, x.dtype)
    return torch.where(fill, out, x)
