"""Score-optimal step schedules (Williams, Campbell, Doucet, Syed 2024; SPEC 2).

For any model exposing ``schedule`` (``gamma(t)``) and ``eps_hat(z, gamma)``:
1. on a fine probe grid, estimate the cost of each step ``t -> t'`` from score calls. As in
   the paper, the path is the variance-exploding one, ``x = z / alpha = f + s eta`` with
   ``s = sigma / alpha = exp(gamma / 2)``, score ``-eps_hat / s`` and speed ``v = s``:
   corrector ``L = s'^2 E||score(x, t') - score(x, t)||^2 = E||(s'/s) eps_hat(z, t) - eps_hat(alpha' x, t')||^2``
   with ``x ~ p_t`` (data noised to t) held fixed; the predictor variant first moves ``x``
   by one Euler (= DDIM) step to ``t'`` and measures ``E||eps_hat(z', t') - eps_hat(z, t)||^2``,
   the change that step assumed away;
2. cumulative length ``Lambda(t_j) = sum_{i<j} sqrt(L(t_i, t_i+1))`` (``L ~ delta(t) d^2``);
3. the N-step grid spends equal length per step: ``t_i = Lambda^-1(i Lambda_total / N)``,
   with a monotone cubic (PCHIP) inverse.
Costs are per dimension (mean over coordinates), so they read the same for any data size.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator
from torch import Tensor
from tqdm.auto import tqdm

from .grids import Grid, gamma_of, gamma_to_t
from .samplers import ddim
from .schedules import alpha_sigma
from .tensors import randn_like

__all__ = ["VARIANTS", "probe_costs", "step_costs", "step_lengths", "equal_cost_times", "score_optimal", "blend"]

VARIANTS = ("corrector", "predictor")


def _call(model, z: Tensor, gamma: float) -> Tensor:
    g = torch.full((z.shape[0],), gamma, device=z.device, dtype=z.dtype)
    return model.eps_hat(z, g)


@torch.no_grad()
def step_costs(model, f: Tensor, t: Tensor, variant: str = "corrector", generator=None,
               progress: bool = False) -> Tensor:
    """Per-dimension cost of each step ``t[j] -> t[j+1]`` (``t`` in either order); the data
    ``f`` (signal space, (B, ...)) are noised afresh at each ``t[j]``. Returns float64 (len(t) - 1,)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown cost variant {variant!r}; choose from {', '.join(VARIANTS)}")
    gammas = gamma_of(model.schedule, t)
    out = torch.empty(len(t) - 1, dtype=torch.float64)
    for j in tqdm(range(len(t) - 1), desc=f"{variant} cost", disable=not progress, leave=False):
        g_a, g_b = float(gammas[j]), float(gammas[j + 1])
        (a_a, a_b), (s_a, _) = alpha_sigma(torch.tensor([g_a, g_b], dtype=torch.float64))
        z = float(a_a) * f + float(s_a) * randn_like(f, generator)
        eps_a = _call(model, z, g_a)
        if variant == "corrector":  # same x = z / alpha, seen at t': z' = (alpha' / alpha) z
            ratio = math.exp((g_b - g_a) / 2)  # s' / s, s = sigma / alpha = exp(gamma / 2)
            diff = ratio * eps_a - _call(model, float(a_b / a_a) * z, g_b)
        else:  # one DDIM step a -> b (reusing eps_a), then how much eps_hat moved along it
            z_b = ddim(lambda *_: eps_a, z, gammas[j:j + 2].to(z.dtype))
            diff = _call(model, z_b, g_b) - eps_a
        out[j] = diff.double().pow(2).mean()
    return out


def equal_cost_times(t_probe: Tensor, costs: Tensor, steps: int) -> Tensor:
    """Decreasing times 1 -> 0 splitting the cumulative length ``sum sqrt(cost)`` evenly."""
    t = t_probe.double().cpu().numpy()
    c = np.sqrt(np.clip(costs.double().cpu().numpy(), 0.0, None))
    if t[0] > t[-1]:
        t, c = t[::-1], c[::-1]
    c = np.maximum(c, 1e-9 * max(c.max(), 1e-30))  # strictly increasing length: invertible
    length = np.concatenate([[0.0], np.cumsum(c)])
    inv = PchipInterpolator(length, t)
    times = inv(np.linspace(length[-1], 0.0, steps + 1))
    times[0], times[-1] = t[-1], t[0]
    return torch.from_numpy(times)


def _probe_times(schedule, probe: int) -> Tensor:
    """Probe grid uniform in gamma (log-SNR), decreasing from t = 1 to 0."""
    g = gamma_of(schedule, torch.tensor([1.0, 0.0]))
    t = gamma_to_t(schedule, torch.linspace(float(g[0]), float(g[1]), probe))
    t[0], t[-1] = 1.0, 0.0
    return torch.from_numpy(np.minimum.accumulate(t.numpy()))


@torch.no_grad()
def probe_costs(model, f: Tensor, probe: int = 100, variant: str = "corrector", generator=None,
                progress: bool = False) -> tuple[Tensor, Tensor]:
    """Step costs on a probe grid uniform in gamma: ``(t_probe, costs)``, reusable for any N."""
    t_probe = _probe_times(model.schedule, probe)
    return t_probe, step_costs(model, f, t_probe, variant, generator, progress)


@torch.no_grad()
def score_optimal(model, f: Tensor, steps: int, probe: int = 100, variant: str = "corrector",
                  generator=None, progress: bool = False, costs: tuple[Tensor, Tensor] | None = None,
                  check: bool = True) -> Grid:
    """The score-optimal ``steps``-step grid for ``model`` on data ``f`` (signal space).
    ``costs`` reuses a ``probe_costs`` result; with ``check``, ``info['length_per_step']``
    re-estimates each chosen step's cost with fresh noise (equal per step when it works)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    t_probe, c = costs if costs is not None else probe_costs(model, f, probe, variant, generator, progress)
    t = equal_cost_times(t_probe, c, steps)
    grid = Grid(t, gamma_of(model.schedule, t), f"score-optimal ({variant})")
    grid.info.update(variant=variant, probe_t=t_probe.tolist(), probe_cost=c.tolist())
    if check:
        grid.info["length_per_step"] = step_lengths(model, f, grid, variant, len(t_probe), generator).tolist()
    return grid


@torch.no_grad()
def step_lengths(model, f: Tensor, grid: Grid, variant: str = "corrector", pieces: int = 100,
                 generator=None) -> Tensor:
    """An independent estimate of each grid step's length ``sum sqrt(L)``: the steps cut
    into about ``pieces`` pieces of equal gamma width in all, costed with fresh noise. Equal
    across the steps of a score-optimal grid; for any other grid, it shows where the cost goes."""
    g = grid.gamma
    width = float(g[0] - g[-1]) / pieces
    cuts = [max(1, math.ceil(float(g[i] - g[i + 1]) / width)) for i in range(grid.steps)]
    sub = torch.cat([g[i] + (g[i + 1] - g[i]) * torch.arange(n, dtype=torch.float64) / n
                     for i, n in enumerate(cuts)] + [g[-1:]])
    t = gamma_to_t(model.schedule, sub)
    t[0], t[-1] = grid.t[0], grid.t[-1]
    lengths = step_costs(model, f, t, variant, generator).sqrt()
    return torch.stack([part.sum() for part in lengths.split(cuts)])


def blend(current: Tensor, target: Tensor, b: float) -> Tensor:
    """Online update ``t <- b t* + (1 - b) t`` (SPEC 2); decreasing stays decreasing."""
    return b * target.to(current) + (1 - b) * current
