"""Solver-aware step grids: the N-step grid that minimises one solver's own error (docs/samplers.md §4).

The score-optimal cost (``score_optimal.py``) knows nothing of the solver that walks the grid.
Here the solver's error is measured, against a fine solution of the probability-flow ODE from
the same starting noises (Align Your Steps, Sabour et al. 2024, chooses grids the same way):

1. ``reference``: DPM-Solver++(2M) on a fine grid through a lattice of ``L`` levels uniform in
   gamma (``substeps`` steps per lattice interval), from ``B`` starting noises. It keeps the
   state ``z_l`` and the noise prediction ``eps_l`` at every lattice level.
2. ``local_errors``: the RMS error of one solver step from the reference state at level ``i``
   to level ``j``, against the reference state there. DDIM and DPM-Solver++(2M) steps are linear
   in ``z_i``, ``x0_i`` (and the previous ``x0_p``), so one Gram matrix of the reference states
   gives every error with no network call; Heun needs one call per pair ``(i, j)`` within
   ``span`` lattice intervals.
3. ``best_path``: dynamic programming for the N-step path from the noisiest level to the last
   with the least summed local error (a multistep solver's state is the pair (previous,
   current): ``O(N L^3)``).
4. ``refine``: the DP path, or another candidate (the fixed grids, any seeds such as the
   score-optimal grid) where it is better broadly (``choose_start``), solved for real from the same
   noises, is refined by coordinate descent on its true final error, keeping only
   moves that help the rows broadly (a paired test): one row can carry a third of the squared
   error, and a move that suits only it does not carry over to fresh noise. Heun's start
   is kept as it is (``SWEEPS``): its refinement did not carry over to fresh noise.
   Heun and DPM-Solver++(2M) also try their DP path with a first-order last step
   (``DP_EULER_LAST``; costed by the DDIM errors, no call): for Heun an Euler step, one call
   unspent on an even budget, as EDM's and the peers' Heun (its corrector would call the network
   at the grid's last, almost noiseless level); for DPM-Solver++(2M) a DDIM step at the same
   calls (diffusers' ``lower_order_final``).

Errors are RMS per coordinate: of ``z`` for a step, of the signal ``z / alpha`` at the end.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .grids import FIXED, Grid, fixed_grid, gamma_of, gamma_to_t
from .progress import progress as progress_bar
from .samplers import EULER_LAST, EpsFn, dpmpp_2m, get_sampler
from .schedules import alpha_sigma, signal_of
from .tensors import randn_like

__all__ = ["SOLVERS", "MULTISTEP", "SWEEPS", "DP_PATH", "DP_EULER_LAST", "Reference", "reference", "local_errors",
           "best_path", "path_cost", "global_error", "refine", "choose_start", "solver_aware"]

SOLVERS = ("ddim", "heun", "dpmpp2m")  # deterministic: an error against the reference means something
MULTISTEP = {"ddim": False, "heun": False, "dpmpp2m": True}
LATTICE, SUBSTEPS, EXAMPLES = 65, 2, 32
DP_PATH = "dynamic programme"  # the DP path's name among the candidates
DP_EULER_LAST = "dynamic programme (Euler last)"  # the DP path whose last step is first order
# Heun's local errors cost a call per pair: every other level, half the rows (on 8 rows the DP path was noisy:
# digits NFE 20 on fresh noise, 0.0454 against 0.0330 on 16; benchmarks/RESULTS.md).
HEUN_LEVELS, HEUN_ROWS = 33, 16
# Refinement sweeps by solver. Heun's DP runs on its true local errors and its refinement did not carry over
# to fresh noise (MNIST NFE 10/20, digits NFE 10/20: benchmarks/RESULTS.md) while costing 2.3x the fit's calls.
SWEEPS = {"ddim": 2, "heun": 0, "dpmpp2m": 2}


@dataclass
class Reference:
    """A fine ODE solution from ``z[0]``: states ``z`` (L, B, ...) and noise predictions ``eps``
    (L - 1, B, ...) at the lattice levels ``gamma`` (L,), decreasing; ``x_end`` the final signal."""

    gamma: Tensor
    z: Tensor
    eps: Tensor
    x_end: Tensor
    evals: int  # network calls (each of B rows) it took

    @property
    def levels(self) -> int:
        return len(self.gamma)


@torch.no_grad()
def reference(eps_fn: EpsFn, gamma_hi: float, gamma_lo: float, z: Tensor, levels: int = LATTICE,
              substeps: int = SUBSTEPS, progress: bool = False) -> Reference:
    """Solve from noise ``z`` at ``gamma_hi`` to ``gamma_lo`` with DPM-Solver++(2M) on
    ``(levels - 1) * substeps`` steps uniform in gamma, keeping the lattice levels (every
    ``substeps``-th)."""
    if levels < 3 or substeps < 1:
        raise ValueError(f"the lattice needs at least 3 levels and 1 substep, got {levels} and {substeps}")
    lattice = torch.linspace(gamma_hi, gamma_lo, levels, dtype=torch.float64)
    fine = torch.linspace(gamma_hi, gamma_lo, (levels - 1) * substeps + 1, dtype=torch.float64)
    fine[::substeps] = lattice  # exactly the lattice levels
    zs, eps = [z], []

    def recording(zz, g):
        eps.append(eps_fn(zz, g))
        return eps[-1]

    def keep(i, zz):
        if (i + 1) % substeps == 0:
            zs.append(zz)

    z_end = dpmpp_2m(recording, z, fine.to(z.dtype), progress=progress, callback=keep)
    eps = eps[::substeps]  # the predictions at the lattice levels (the fine steps' starting points)
    return Reference(lattice, torch.stack(zs), torch.stack(eps), signal_of(z_end, lattice[-1]), len(fine) - 1)


def _coarser(ref: Reference, levels: int, rows: int) -> Reference:
    """The reference on about ``levels`` of its lattice levels (both ends kept) and its first ``rows`` rows."""
    idx = torch.linspace(0, ref.levels - 1, min(levels, ref.levels)).round().long().unique()
    return Reference(ref.gamma[idx], ref.z[idx, :rows], ref.eps[idx[:-1], :rows], ref.x_end[:rows], ref.evals)


def _gram(ref: Reference) -> np.ndarray:
    """Mean over rows and coordinates of the inner products of the states ``z_l`` (indices
    ``0..L-1``) and data predictions ``x0_l = (z_l - sigma_l eps_l) / alpha_l`` (``L..2L-2``)."""
    g = ref.gamma.view(-1, *(1,) * (ref.z.dim() - 1))
    alpha, sigma = alpha_sigma(g)
    z = ref.z.double().flatten(2)  # (L, B, D)
    x0 = ((ref.z[:-1].double() - sigma[:-1] * ref.eps.double()) / alpha[:-1]).flatten(2)
    v = torch.cat([z, x0]).transpose(0, 1)  # (B, 2L - 1, D)
    return (v @ v.transpose(1, 2)).mean(0).div(v.shape[-1]).numpy()


def _linear_errors(ref: Reference, multistep: bool) -> np.ndarray:
    """RMS errors of the steps ``z_j ~ a z_i + b x0_i + c x0_p`` from the Gram matrix: first-order
    (DDIM = DPM-Solver-1) ``E[i, j]``, or DPM-Solver++(2M) ``E[p, i, j]`` (infinite off ``p < i < j``)."""
    G, L = _gram(ref), ref.levels
    gam = ref.gamma.numpy()
    alpha, sigma = (v.numpy() for v in alpha_sigma(ref.gamma))
    if multistep:
        p, i, j = np.meshgrid(np.arange(L), np.arange(L), np.arange(L), indexing="ij")
        valid = (p < i) & (i < j)
    else:
        i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
        p, valid = i, i < j
    i_, j_, p_ = np.where(valid, i, 0), np.where(valid, j, 1), np.where(valid, p, 0)
    i_ = np.minimum(i_, L - 2)
    h = (gam[i_] - gam[j_]) / 2  # DPM-Solver's step in lambda = -gamma / 2
    em = np.expm1(-h)
    a = sigma[j_] / sigma[i_]
    if multistep:  # (Lu et al. 2022, Alg. 2): x0_d = (1 + 1/2r) x0_i - 1/2r x0_p, r = h_prev / h
        with np.errstate(divide="ignore", invalid="ignore"):
            half_r = np.where(valid, h / (gam[p_] - gam[i_]), 0.0)  # 1 / (2 r) = h / (2 h_prev)
        b, c = -alpha[j_] * em * (1 + half_r), alpha[j_] * em * half_r
    else:
        b, c = -alpha[j_] * em, np.zeros_like(em)
    Z, X = lambda k: k, lambda k: L + np.minimum(k, L - 2)
    terms = [(a, Z(i_), a, Z(i_)), (b, X(i_), b, X(i_)), (c, X(p_), c, X(p_)), (1.0, Z(j_), 1.0, Z(j_)),
             (2 * a, Z(i_), b, X(i_)), (2 * a, Z(i_), c, X(p_)), (-2 * a, Z(i_), 1.0, Z(j_)),
             (2 * b, X(i_), c, X(p_)), (-2 * b, X(i_), 1.0, Z(j_)), (-2 * c, X(p_), 1.0, Z(j_))]
    sq = sum(u * w * G[m, n] for u, m, w, n in terms)
    return np.where(valid, np.sqrt(np.clip(sq, 0.0, None)), np.inf)


@torch.no_grad()
def _heun_errors(eps_fn: EpsFn, ref: Reference, span: int, progress: bool) -> tuple[np.ndarray, int]:
    """RMS errors ``E[i, j]`` of one Heun step (one network call per pair), ``j - i <= span``;
    and the calls it took, in calls of the reference's B rows."""
    L, gam = ref.levels, ref.gamma
    E, calls = np.full((L, L), np.inf), 0
    for i in progress_bar(range(L - 1), desc="heun local errors", enabled=progress):
        js = torch.arange(i + 1, min(i + span, L - 1) + 1)
        k, B = len(js), ref.z.shape[1]
        alpha_i, _ = alpha_sigma(gam[i])
        x_i, d_i = ref.z[i] / float(alpha_i), ref.eps[i]
        s_i, s_j = math.exp(float(gam[i]) / 2), (gam[js] / 2).exp()
        shape = (k,) + (1,) * ref.z[i].dim()
        ds = (s_j - s_i).view(shape).to(x_i.dtype)
        alpha_j = alpha_sigma(gam[js])[0].view(shape).to(x_i.dtype)
        x_euler = x_i + ds * d_i  # (k, B, ...)
        d_j = eps_fn((alpha_j * x_euler).flatten(0, 1), gam[js].repeat_interleave(B).to(x_i.dtype))
        z_hat = alpha_j * (x_i + ds * (d_i + d_j.view_as(x_euler)) / 2)
        err = (z_hat - ref.z[js]).double().flatten(1).pow(2).mean(1).sqrt()
        E[i, js.numpy()] = err.numpy()
        calls += k  # calls of B rows, k of them batched into one
    return E, calls


def local_errors(ref: Reference, solver: str, eps_fn: EpsFn | None = None, span: int | None = None,
                 progress: bool = False) -> np.ndarray:
    """The solver's one-step errors from the reference: ``E[i, j]`` (single-step solvers) or
    ``E[p, i, j]`` (DPM-Solver++(2M), whose first step is ``E1[0, j]``: see ``best_path``)."""
    _check(solver)
    if solver == "heun":
        if eps_fn is None:
            raise ValueError("heun's local errors need the network (eps_fn)")
        return _heun_errors(eps_fn, ref, span or ref.levels, progress)[0]
    return _linear_errors(ref, MULTISTEP[solver])


def path_cost(path: list[int], errors: np.ndarray, first: np.ndarray | None = None,
              last: np.ndarray | None = None) -> float:
    """Summed local error along lattice indices ``path``; a multistep solver's ``errors`` are
    ``E[p, i, j]`` and its first step costs ``first[i, j]``; the last step costs ``last[i, j]``
    where given (a first-order last step: Heun's Euler step, DPM-Solver++(2M)'s DDIM step)."""
    if errors.ndim == 2:
        cost = [(last if last is not None and k == len(path) - 2 else errors)[a, b]
                for k, (a, b) in enumerate(zip(path, path[1:]))]
        return float(sum(cost))
    cost = float(first[path[0], path[1]])
    steps = list(zip(path, path[1:], path[2:]))
    return cost + float(sum(last[i, j] if last is not None and k == len(steps) - 1 else errors[p, i, j]
                            for k, (p, i, j) in enumerate(steps)))


def best_path(errors: np.ndarray, steps: int, first: np.ndarray | None = None,
              last: np.ndarray | None = None) -> tuple[list[int], float]:
    """The ``steps``-step path of lattice indices ``0 -> L-1`` with the least ``path_cost``,
    by dynamic programming: ``C_k[j] = min_i C_{k-1}[i] + E[i, j]``, or for a multistep solver over
    pairs, ``C_k[i, j] = min_p C_{k-1}[p, i] + E[p, i, j]`` with ``C_1[0, j] = first[0, j]``;
    ``last[i, j]`` in place of ``E`` on the last step, where given."""
    L = errors.shape[-1]
    if not 1 <= steps <= L - 1:
        raise ValueError(f"{steps} steps do not fit a lattice of {L} levels")
    idx = np.arange(L)
    forward = idx[:, None] < idx[None, :]  # a step goes to a lower level: i < j
    back = []
    if errors.ndim == 2:
        errors = np.where(forward, errors, np.inf)
        final = errors if last is None else np.where(forward, last, np.inf)
        cost = np.full(L, np.inf)
        cost[0] = 0.0
        for k in range(steps):
            total = cost[:, None] + (final if k == steps - 1 else errors)  # (i, j)
            back.append(total.argmin(0))
            cost = total.min(0)
        path = [L - 1]
        for arg in reversed(back):
            path.append(int(arg[path[-1]]))
        return path[::-1], float(cost[-1])
    if first is None:
        raise ValueError("a multistep solver's path needs its first-step errors")
    if steps == 1:
        return [0, L - 1], float(first[0, L - 1])
    valid = forward[:, :, None] & forward[None, :, :]  # p < i < j
    errors = np.where(valid, errors, np.inf)
    final = errors if last is None else np.where(valid, last[None], np.inf)
    cost = np.full((L, L), np.inf)
    cost[0] = np.where(forward[0], first[0], np.inf)
    for k in range(steps - 1):
        total = cost[:, :, None] + (final if k == steps - 2 else errors)  # (p, i, j)
        back.append(total.argmin(0))
        cost = total.min(0)
    i = int(cost[:, -1].argmin())
    path = [i, L - 1]
    for arg in reversed(back):
        path.insert(0, int(arg[path[0], path[1]]))
    return path, float(cost[i, -1])


class _Memo:
    """``eps_fn`` that remembers one trajectory: a call at a level and state of the kept
    trajectory returns its stored prediction. A trial grid that differs from the best one after
    level m replays the steps before m from memory, so coordinate descent pays only for the
    steps it changes; only the best trajectory's predictions are kept."""

    def __init__(self, eps_fn: EpsFn):
        self.eps_fn, self.kept, self.used, self.calls = eps_fn, [], [], 0

    def __call__(self, z: Tensor, gamma: Tensor) -> Tensor:
        key = float(gamma.reshape(-1)[0])
        for entry in self.kept:
            if entry[0] == key and torch.equal(entry[1], z):
                self.used.append(entry)
                return entry[2]
        out = self.eps_fn(z, gamma)
        self.calls += 1
        self.used.append((key, z, out))
        return out

    def settle(self, keep: bool) -> None:
        """After a solve: remember its trajectory (``keep``) or the one kept before."""
        if keep:
            self.kept = self.used
        self.used = []


def _squared_errors(eps_fn: EpsFn, ref: Reference, solver: str, gammas: Tensor, euler_last: bool) -> Tensor:
    """Each reference row's mean squared error of the final signal when ``solver`` walks ``gammas``."""
    z = get_sampler(solver, euler_last)(eps_fn, ref.z[0], gammas.to(ref.z.dtype))
    return (signal_of(z, gammas[-1]) - ref.x_end).double().pow(2).flatten(1).mean(1)


@torch.no_grad()
def global_error(eps_fn: EpsFn, ref: Reference, solver: str, gammas: Tensor, euler_last: bool = False) -> float:
    """RMS error of the final signal when ``solver`` walks ``gammas`` from the reference's noises."""
    return float(_squared_errors(eps_fn, ref, solver, gammas, euler_last).mean().sqrt())


@torch.no_grad()
def refine(eps_fn: EpsFn, ref: Reference, solver: str, gammas: Tensor, sweeps: int = 2,
           progress: bool = False, euler_last: bool = False, test: float = 1.0,
           start: tuple[_Memo, Tensor] | None = None) -> tuple[Tensor, float, int]:
    """Coordinate descent on the true error (a compass search): each interior level in turn
    tries moving a share ``1/2, 1/4, ...`` (one per sweep) of the way to one neighbour, then,
    unless that move was kept, to the other; a move is kept when it lowers the mean squared
    error by more than ``test`` standard errors of the paired per-row change. One row can carry
    a third of the squared error: a move that only suits it does not carry over to fresh noise,
    so a move must help the rows broadly. ``start``: the memo and per-row errors of a solve of
    ``gammas`` already made (``solver_aware``'s candidates), saving that solve.
    Returns ``(gammas, RMS error, calls)``."""
    memo, best = start if start is not None else (_Memo(eps_fn), None)
    calls0 = memo.calls
    g = gammas.double().clone()
    if best is None:
        best = _squared_errors(memo, ref, solver, g, euler_last)
        memo.settle(True)
    moves = [(s, m) for s in range(sweeps) for m in range(1, len(g) - 1)]
    for s, m in progress_bar(moves, desc=f"refine ({solver})", enabled=progress):
        share = 0.5 ** (s + 1)
        for neighbour in (m + 1, m - 1):
            trial = g.clone()
            trial[m] = g[m] + share * (g[neighbour] - g[m])
            e = _squared_errors(memo, ref, solver, trial, euler_last)
            mean, se = _paired(e - best)
            better = mean < -max(test, 0.0) * se
            memo.settle(better)
            if better:
                g, best = trial, e
                break
    return g, float(best.mean().sqrt()), memo.calls - calls0


def choose_start(errors: dict[str, float], versus_dp: dict[str, tuple[float, float]], test: float = 1.0) -> str:
    """The candidate the fit starts from: the dynamic-programme path, unless other candidates lower the
    fit rows' mean squared error by more than ``test`` standard errors of the paired per-row change
    (``versus_dp``: name -> (mean change, standard error)); then the least of those by ``errors``.
    The refinement's rule for a move: candidates often differ by less than the noise of 32 rows, and the
    least on them need not be the least on fresh noise (benchmarks/RESULTS.md)."""
    passed = [name for name, (mean, se) in versus_dp.items() if mean < -max(test, 0.0) * se]
    return min(passed, key=errors.get) if passed else DP_PATH


def _paired(change: Tensor) -> tuple[float, float]:
    """Mean of a per-row change and its standard error."""
    se = float(change.std() / math.sqrt(len(change))) if len(change) > 1 else 0.0
    return float(change.mean()), se


def _check(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver-aware grids are for the deterministic solvers {', '.join(SOLVERS)}, not {solver!r} "
                         "(an ancestral sampler draws fresh noise: it has no single trajectory to match)")


def solver_aware(model, solver: str, steps: int, *, seeds: dict[str, Tensor] | None = None,
                 examples: int = EXAMPLES, levels: int = LATTICE, substeps: int = SUBSTEPS, span: int | None = None,
                 sweeps: int | None = None, heun_rows: int = HEUN_ROWS, generator: torch.Generator | None = None,
                 progress: bool = False, eps_fn: Callable | None = None, euler_last: bool = False,
                 try_euler_last: bool = True, test: float = 1.0) -> Grid:
    """The ``steps``-step grid for ``solver`` on ``model`` (its ``schedule`` and ``eps_hat``):
    reference, local errors, DP, then ``refine`` from the candidate ``choose_start`` picks of the DP
    path, the fixed grids (``grids.FIXED``) and ``seeds`` (name -> decreasing gammas over the model's
    range, e.g. the score-optimal grid). ``info`` records each candidate (its grid, its true error,
    its paired change against the DP path), the chosen one, the network calls and the seconds.
    ``test``: standard errors a candidate or a refinement move must win by.
    ``euler_last``: the last step is first order (Heun's Euler step, ``samplers.sampler_for_nfe``
    on an odd budget; DPM-Solver++(2M)'s DDIM step); without it both also try that form on the same
    steps (``DP_EULER_LAST``; for Heun one call fewer) unless ``try_euler_last`` is off, and
    ``info["euler_last"]`` says which form the grid is for.
    ``sweeps``: refinement sweeps, by default ``SWEEPS[solver]`` (none for Heun: its start
    is the grid). ``heun_rows``: the reference rows Heun's local errors are measured on."""
    _check(solver)
    sweeps = SWEEPS[solver] if sweeps is None else sweeps
    get_sampler(solver, euler_last)
    tic = time.perf_counter()
    eps_fn = eps_fn or model.eps_hat
    g_lo, g_hi = (float(v) for v in gamma_of(model.schedule, torch.tensor([0.0, 1.0])))
    dev = model.schedule.gamma_0.device
    z = randn_like(torch.empty((examples,) + tuple(model.data_shape), device=dev), generator)
    ref = reference(eps_fn, g_hi, g_lo, z, levels, substeps, progress)
    calls = ref.evals
    lattice = ref
    if solver == "heun":
        lattice = _coarser(ref, HEUN_LEVELS, heun_rows)
        steps_span = span or min(lattice.levels - 1, max(4, math.ceil(3 * (lattice.levels - 1) / steps)))
        E, extra = _heun_errors(eps_fn, lattice, steps_span, progress)
        calls, first = calls + extra * lattice.z.shape[1] / examples, None
        euler = _linear_errors(lattice, False)  # Euler = DDIM: no calls
    else:
        E = _linear_errors(ref, MULTISTEP[solver])
        first = euler = _linear_errors(ref, False) if MULTISTEP[solver] else None  # DPM-Solver++(2M)'s first order
    path, dp_cost = best_path(E, steps, first, euler if euler_last else None)
    fixed = {name: fixed_grid(name, model.schedule, steps).gamma for name in FIXED}
    candidates, forms = {DP_PATH: lattice.gamma[path]}, {DP_PATH: euler_last}  # forms: name -> its euler_last
    if solver in EULER_LAST and not euler_last and try_euler_last:  # also the DP path whose last step is first order
        candidates[DP_EULER_LAST], forms[DP_EULER_LAST] = lattice.gamma[best_path(E, steps, first, euler)[0]], True
    for name, g in {**fixed, **(seeds or {})}.items():
        if len(g) == steps + 1:
            g = g.double().clone()
            g[0], g[-1] = g_hi, g_lo
            candidates[name], forms[name] = g, euler_last
    solves = {}  # name -> (memo holding its trajectory, per-row squared errors)
    for name, g in candidates.items():
        memo = _Memo(eps_fn)
        solves[name] = memo, _squared_errors(memo, ref, solver, g, forms[name])
        memo.settle(True)
        calls += memo.calls
    errors = {name: float(e.mean().sqrt()) for name, (_, e) in solves.items()}
    dp = solves[DP_PATH][1]
    versus_dp = {name: _paired(e - dp) for name, (_, e) in solves.items() if name != DP_PATH}
    start = choose_start(errors, versus_dp, test)
    euler_last = forms[start]
    gammas, err, refine_calls = refine(eps_fn, ref, solver, candidates[start], sweeps, progress, euler_last, test,
                                       start=solves[start])
    calls += refine_calls
    t = gamma_to_t(model.schedule, gammas)
    t[0], t[-1] = 1.0, 0.0
    grid = Grid(t, gammas, f"solver-aware ({solver})")
    grid.info.update(sampler=solver, euler_last=euler_last, error=err, start=start, candidate_errors=errors,
                     candidate_versus_dp=versus_dp, candidates={k: v.tolist() for k, v in candidates.items()},
                     candidate_euler_last=forms,
                     dp_cost=dp_cost, lattice=levels, dp_lattice=lattice.levels, substeps=substeps, examples=examples,
                     sweeps=sweeps, heun_rows=lattice.z.shape[1] if solver == "heun" else None,
                     network_calls=round(calls), rows_per_call=examples, seconds=time.perf_counter() - tic)
    return grid
