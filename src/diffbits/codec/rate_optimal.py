"""Rate-optimal chain times: where the codec's T steps go.

The T-step chain's diffusion term (VDM eq. 14) is ``sum_i 0.5 expm1(gamma_i - gamma_{i-1})
m(gamma_i)`` with ``m(gamma) = E||eps - eps_hat(z_gamma)||^2``, the model's noise-prediction
error at that level. Steps uniform in t put as many steps where ``m`` is tiny (high noise) as
where it is large; this module puts them where they cost the least: it estimates ``m`` on a
few examples, makes it consistent with an exact denoiser's (``m e^gamma``, the x-error, never
falls as noise grows: isotonic regression), and picks the T steps on a lattice of levels by
dynamic programming. The chosen steps are lattice indices ("knots"), a few bytes in a file's
header, and the levels come back from the schedule's endpoints in float64 on any machine.
Any grid gives a valid bound and a decodable stream: the estimate only decides how good.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression

from ..bound import data_to_signal
from ..grids import Grid, from_gammas, gamma_of
from ..schedules import alpha_sigma

LATTICE = 1024  # lattice steps between gamma(0) and gamma(1)


def endpoints(schedule) -> tuple[float, float]:
    g = gamma_of(schedule, torch.tensor([0.0, 1.0], dtype=torch.float64))
    return float(g[0]), float(g[1])


def lattice(schedule, size: int = LATTICE) -> np.ndarray:
    """``size + 1`` levels evenly spaced from gamma(0) to gamma(1), float64."""
    g0, g1 = endpoints(schedule)
    return g0 + (g1 - g0) * np.arange(size + 1, dtype=np.float64) / size


def knot_gammas(schedule, knots, size: int = LATTICE) -> np.ndarray:
    """The chain's levels for lattice indices ``knots`` (0 first, ``size`` last, increasing)."""
    k = np.asarray(knots, dtype=np.int64)
    if k.ndim != 1 or len(k) < 2 or k[0] != 0 or k[-1] != size or np.any(np.diff(k) <= 0):
        raise ValueError(f"knots must rise strictly from 0 to {size}")
    return lattice(schedule, size)[k]


def chain_grid(schedule, knots, size: int = LATTICE) -> Grid:
    """The chain through ``knots`` as a ``Grid`` (noisiest first), for ``VDM.bound(grid=...)``."""
    return from_gammas(schedule, torch.from_numpy(knot_gammas(schedule, knots, size)[::-1].copy()), "rate-optimal")


@torch.no_grad()
def eps_error(model, x: np.ndarray | torch.Tensor, gammas: np.ndarray, seed: int = 0) -> np.ndarray:
    """``E||eps - eps_hat(z_gamma)||^2`` per dimension at each level, one noise draw per example."""
    dev = model.schedule.gamma_0.device
    f = data_to_signal(torch.as_tensor(x), model.levels, torch.float32).to(dev)
    gen = torch.Generator().manual_seed(seed)
    out = np.empty(len(gammas))
    for i, g in enumerate(torch.as_tensor(gammas, dtype=torch.float32)):
        alpha, sigma = alpha_sigma(g)
        eps = torch.randn(f.shape, generator=gen).to(dev)
        eps_hat = model.eps_hat(alpha * f + sigma * eps, g.expand(len(f)).to(dev))
        out[i] = float((eps - eps_hat).square().mean())
    return out


def consistent_error(gammas: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``m`` refitted so that the x-error ``m e^gamma`` never falls as gamma rises (as for an
    exact denoiser, VDM appendix), by isotonic regression in the x-error; weights ``e^-gamma``
    keep the fit's squared error in units of ``m``."""
    gammas = np.asarray(gammas, dtype=np.float64)
    iso = IsotonicRegression(increasing=True)
    w = np.exp(-2 * (gammas - gammas.max()))
    return iso.fit_transform(gammas, np.asarray(m) * np.exp(gammas - gammas.max()), sample_weight=w) * \
        np.exp(gammas.max() - gammas)


def optimal_knots(gammas: np.ndarray, m: np.ndarray, T: int) -> np.ndarray:
    """The T steps on the lattice ``gammas`` (from its first point to its last) that minimise
    ``sum_i expm1(gammas[k_i] - gammas[k_{i-1}]) m[k_i]``: dynamic programming, O(T n^2)."""
    n = len(gammas) - 1
    if not 1 <= T <= n:
        raise ValueError(f"T must be between 1 and the lattice's {n} steps, got {T}")
    step = np.expm1(gammas[None, :] - gammas[:, None]) * np.asarray(m)[None, :]  # from row i to column j
    step[np.tril_indices(n + 1)] = np.inf
    cost = np.full(n + 1, np.inf)
    cost[0] = 0.0
    back = np.empty((T, n + 1), dtype=np.int64)
    for k in range(T):
        total = cost[:, None] + step
        back[k] = total.argmin(0)
        cost = total[back[k], np.arange(n + 1)]
    knots = [n]
    for k in range(T - 1, -1, -1):
        knots.append(int(back[k][knots[-1]]))
    return np.array(knots[::-1])


def diffusion_bits(gammas: np.ndarray, lattice_gammas: np.ndarray, m: np.ndarray) -> float:
    """Expected diffusion term of the chain through ``gammas``, bits per dimension, for the
    error ``m`` known on ``lattice_gammas`` (VDM eq. 14 with the error at each step's end)."""
    return 0.5 * float(np.sum(np.expm1(np.diff(gammas)) * np.interp(gammas[1:], lattice_gammas, m))) / np.log(2)


MIN_PROBES, MAX_PROBES = 32, 256


def probes_for(T: int, n: int, examples: int = 64) -> int:
    """Levels at which to measure the error: as many network passes as coding ``n`` examples
    with T steps takes (the estimate never costs more than the coding), within 32 to 256."""
    return int(np.clip(T * n // max(min(n, examples), 1), MIN_PROBES, MAX_PROBES))


def rate_optimal_knots(model, x, T: int, size: int = LATTICE, probes: int | None = None, examples: int = 64,
                       seed: int = 0) -> tuple[np.ndarray, float]:
    """Knots of the T-step chain for data like ``x`` (up to ``examples`` of them are used):
    the error measured at ``probes`` levels (default ``probes_for``), made consistent,
    interpolated onto the lattice. Also returns the expected saving over steps uniform in t,
    bits per dimension."""
    schedule = model.schedule
    x = np.asarray(x)
    probes = probes_for(T, len(x), examples) if probes is None else probes
    pick = np.random.default_rng(seed).permutation(len(x))[:examples]
    g0, g1 = endpoints(schedule)
    probe_gammas = np.linspace(g0, g1, probes)
    m = consistent_error(probe_gammas, eps_error(model, x[pick], probe_gammas, seed))
    fine = lattice(schedule, size)
    m_fine = np.interp(fine, probe_gammas, m)
    knots = optimal_knots(fine, m_fine, T)
    uniform = gamma_of(schedule, torch.arange(T + 1, dtype=torch.float64) / T).numpy()
    return knots, diffusion_bits(uniform, fine, m_fine) - diffusion_bits(fine[knots], fine, m_fine)
