"""Score-optimal step grids (Williams, Campbell, Doucet, Syed 2024; docs/score_optimal.md).

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

Fast by default (docs/score_optimal.md): ``EXAMPLES`` data rows; the probe steps batched,
many (example, probe level) rows per network call, each row with its own gamma; common random
numbers, one noise ``eps`` per example shared by every probe level, so neighbouring costs are
correlated and the cost curve is smooth; no re-check (``check=False``). ``examples=None,
common_noise=False, batch=len(f)`` is the thorough estimate: all of ``f``, fresh noise and one
network call per probe level.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator
from torch import Tensor

from .progress import progress as progress_bar
from .grids import Grid, gamma_of, gamma_to_t
from .schedules import alpha_sigma
from .tensors import append_dims, randn_like

__all__ = ["VARIANTS", "blend", "equal_cost_times", "probe_costs", "score_optimal", "step_costs", "step_lengths"]

VARIANTS = ("corrector", "predictor")
EXAMPLES = 64  # data rows of the fast estimate (tests/test_score_optimal.py bounds its grid error)
CALL_NUMBERS = {"cpu": 2**16, "other": 2**22}  # data numbers per network call when ``batch`` is None


def _subset(f: Tensor, examples: int | None) -> Tensor:
    """``examples`` rows of ``f`` spread evenly over it (all of them for None)."""
    if examples is None or examples >= len(f):
        return f
    return f[torch.linspace(0, len(f) - 1, examples).round().long().to(f.device)]


def _rows_per_call(f: Tensor, batch: int | None) -> int:
    """``batch``, or as many rows as hold ``CALL_NUMBERS`` data numbers (on a CPU, calls of
    about 2^16 numbers ran fastest; larger ones left the cache)."""
    if batch is not None:
        return batch
    numbers = CALL_NUMBERS["cpu" if f.device.type == "cpu" else "other"]
    return max(1, numbers // max(1, f[0].numel()))


def _per_row(v: Tensor, f: Tensor) -> Tensor:
    """One value per probe step (k,) for each of the n rows of ``f``: (k n, 1, ...), step-major."""
    return append_dims(v.to(f.device, f.dtype).repeat_interleave(len(f)), f.dim())


def _chunk_costs(model, f: Tensor, eps: Tensor, g_a: Tensor, g_b: Tensor, variant: str) -> Tensor:
    """Costs (k,) of the steps ``g_a -> g_b`` in one batch of k n rows (step j, example i) at row
    j n + i. ``eps`` is the noise, (n, ...) shared by the steps or (k, n, ...) one per step."""
    k = len(g_a)
    (a_a, s_a), (a_b, s_b) = alpha_sigma(g_a), alpha_sigma(g_b)
    rows = lambda v: _per_row(v, f)
    f_rows = f.repeat(k, *(1,) * (f.dim() - 1))
    z = rows(a_a) * f_rows + rows(s_a) * eps.expand(k, *f.shape).reshape(f_rows.shape)  # z_t = alpha f + sigma eps
    eps_a = model.eps_hat(z, rows(g_a).flatten())
    if variant == "corrector":  # same x = z / alpha seen at t': z' = (alpha'/alpha) z, weight s'/s = exp((g' - g)/2)
        diff = rows(((g_b - g_a) / 2).exp()) * eps_a - model.eps_hat(rows(a_b / a_a) * z, rows(g_b).flatten())
    else:  # one DDIM step a -> b reusing eps_a, then how far eps_hat moved along it
        z_b = rows(a_b / a_a) * (z - rows(s_a) * eps_a) + rows(s_b) * eps_a
        diff = model.eps_hat(z_b, rows(g_b).flatten()) - eps_a
    return diff.reshape(k, -1).double().pow(2).mean(1).cpu()


@torch.no_grad()  # not inference_mode: the online grid runs mid-training, on the EMA model
def step_costs(model, f: Tensor, t: Tensor, variant: str = "corrector", generator=None,
               progress: bool = False, *, batch: int | None = None, common_noise: bool = True) -> Tensor:
    """Per-dimension cost of each step ``t[j] -> t[j+1]`` (``t`` in either order) for data ``f``
    (signal space, (B, ...)) noised to ``t[j]``: float64 (len(t) - 1,). Steps share network calls
    of up to ``batch`` rows (at least B; None: sized to the data, see ``CALL_NUMBERS``). With
    ``common_noise`` one noise draw serves every step (common random numbers: neighbouring costs
    share their noise, so the cost curve is smooth); without, each step draws its own (the
    per-step estimate of Williams et al. 2024), the same numbers for any ``batch``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown cost variant {variant!r}; choose from {', '.join(VARIANTS)}")
    gammas = gamma_of(model.schedule, t)
    per_call = max(1, _rows_per_call(f, batch) // len(f))
    shared = randn_like(f, generator) if common_noise else None
    out = []
    for j in progress_bar(range(0, len(t) - 1, per_call), desc=f"{variant} cost", enabled=progress):
        g = gammas[j:j + per_call + 1]
        eps = shared if common_noise else torch.stack([randn_like(f, generator) for _ in range(len(g) - 1)])
        out.append(_chunk_costs(model, f, eps, g[:-1], g[1:], variant))
    return torch.cat(out)


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


def probe_costs(model, f: Tensor, probe: int = 100, variant: str = "corrector", generator=None,
                progress: bool = False, *, examples: int | None = EXAMPLES, batch: int | None = None,
                common_noise: bool = True) -> tuple[Tensor, Tensor]:
    """Step costs on a probe grid uniform in gamma: ``(t_probe, costs)``, reusable for any N.
    Uses ``examples`` rows of ``f`` spread evenly over it (None: all of them); ``batch`` and
    ``common_noise`` as in ``step_costs``."""
    t_probe = _probe_times(model.schedule, probe)
    c = step_costs(model, _subset(f, examples), t_probe, variant, generator, progress,
                   batch=batch, common_noise=common_noise)
    return t_probe, c


def score_optimal(model, f: Tensor, steps: int, probe: int = 100, variant: str = "corrector",
                  generator=None, progress: bool = False, costs: tuple[Tensor, Tensor] | None = None,
                  check: bool = False, *, examples: int | None = EXAMPLES, batch: int | None = None,
                  common_noise: bool = True) -> Grid:
    """The score-optimal ``steps``-step grid for ``model`` on data ``f`` (signal space).
    ``costs`` reuses a ``probe_costs`` result (one pass serves every N; ``f`` may then be None);
    ``examples``, ``batch`` and ``common_noise`` are passed to ``probe_costs``. The re-check is
    off by default: with ``check``, ``info['length_per_step']`` re-estimates each chosen step's
    length with fresh noise (``step_lengths``, a second pass as long as the estimate itself)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    t_probe, c = costs if costs is not None else probe_costs(
        model, f, probe, variant, generator, progress, examples=examples, batch=batch, common_noise=common_noise)
    t = equal_cost_times(t_probe, c, steps)
    grid = Grid(t, gamma_of(model.schedule, t), f"score-optimal ({variant})")
    grid.info.update(variant=variant, probe_t=t_probe.tolist(), probe_cost=c.tolist())
    if check:
        lengths = step_lengths(model, _subset(f, examples), grid, variant, len(t_probe), generator, batch=batch)
        grid.info["length_per_step"] = lengths.tolist()
    return grid


def step_lengths(model, f: Tensor, grid: Grid, variant: str = "corrector", pieces: int = 100,
                 generator=None, *, batch: int | None = None) -> Tensor:
    """An independent estimate of each grid step's length ``sum sqrt(L)``: the steps cut
    into about ``pieces`` pieces of equal gamma width in all, costed with fresh noise (one
    draw shared by the pieces). Equal across the steps of a score-optimal grid; for any
    other grid, it shows where the cost goes."""
    g = grid.gamma
    width = float(g[0] - g[-1]) / pieces
    cuts = [max(1, math.ceil(float(g[i] - g[i + 1]) / width)) for i in range(grid.steps)]
    sub = torch.cat([g[i] + (g[i + 1] - g[i]) * torch.arange(n, dtype=torch.float64) / n
                     for i, n in enumerate(cuts)] + [g[-1:]])
    t = gamma_to_t(model.schedule, sub)
    t[0], t[-1] = grid.t[0], grid.t[-1]
    lengths = step_costs(model, f, t, variant, generator, batch=batch).sqrt()
    return torch.stack([part.sum() for part in lengths.split(cuts)])


def blend(current: Tensor, target: Tensor, b: float) -> Tensor:
    """Online update ``t <- b t* + (1 - b) t`` (docs/score_optimal.md eq. 9); decreasing stays decreasing."""
    return b * target.to(current) + (1 - b) * current
