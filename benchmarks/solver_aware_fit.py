"""How the solver-aware fit's settings carry over to fresh noise (docs/samplers.md section 4).

On a shipped model (``--model``, default ``digits``): a DPM-Solver++(2M) reference of ``--ref-steps`` steps from
``--n`` fresh noises (not the fit's), and for each (solver, NFE) the RMSE to it of EDM rho = 7
and of the solver-aware grid fitted with the old settings (16 noises, 3 substeps, 3 sweeps, any
decrease kept) and with the defaults (32 noises, 2 substeps, ``solver_aware.SWEEPS`` sweeps, a move
kept only when the paired per-noise change is a standard error below zero), or with two standard
errors (``--settings strict``), two, one or no refinement sweeps (``two-sweeps``, ``one-sweep``,
``no-refine``), Heun's local errors measured on 8 rows, not 16 (``heun-rows-8``), or Heun's
settings before December 2026 (``previous``: 2 sweeps, 8 rows), or 48 or 64 fitting noises
(``noises-48``, ``noises-64``), or without the candidate whose last step is first order (``no-euler-last``,
the fit before December 2026: Heun's last step a Heun step on an even budget, DPM-Solver++(2M)'s second
order); each grid is walked in the form it was fitted for. Each RMSE difference to EDM comes with a
paired bootstrap standard error; the share of the squared error carried by the worst noise says why one
is needed. Prints a table and appends it to ``benchmarks/RESULTS.md``.

    python benchmarks/solver_aware_fit.py [--model digits] [--n 512] [--ref-steps 200]
        [--settings old,default] [--cases dpmpp2m:5,...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import append_results, header  # noqa: E402

from diffbits.grids import fixed_grid  # noqa: E402
from diffbits.runs import resolve_model  # noqa: E402
from diffbits.samplers import SAMPLERS, get_sampler, nfe_budget  # noqa: E402
from diffbits.schedules import signal_of  # noqa: E402
from diffbits.solver_aware import solver_aware  # noqa: E402
from diffbits.tensors import randn_like  # noqa: E402

CASES = (("dpmpp2m", 5), ("dpmpp2m", 10), ("dpmpp2m", 20), ("heun", 10), ("heun", 20))
SETTINGS = {"old": ("old (16 noises, any decrease)", dict(examples=16, substeps=3, sweeps=3, test=0.0)),
            "default": ("default", {}),
            "strict": ("a move kept at 2 standard errors", dict(test=2.0)),
            "two-sweeps": ("two refinement sweeps", dict(sweeps=2)),
            "one-sweep": ("one refinement sweep", dict(sweeps=1)),
            "no-refine": ("the best candidate, unrefined", dict(sweeps=0)),
            "heun-rows-8": ("Heun's local errors on 8 rows", dict(heun_rows=8)),
            "noises-48": ("48 fitting noises, not 32", dict(examples=48)),
            "noises-64": ("64 fitting noises, not 32", dict(examples=64)),
            "previous": ("before: Heun refined (2 sweeps), local errors on 8 rows", dict(sweeps=2, heun_rows=8)),
            "no-euler-last": ("no first-order-last candidate", dict(try_euler_last=False))}


def fresh_reference(model, n: int, ref_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` fresh noises (seed 0; the fits use 1234) and their reference signals: DPM-Solver++(2M),
    ``ref_steps`` steps uniform in log-SNR."""
    z = randn_like(torch.empty((n,) + tuple(model.data_shape)), torch.Generator().manual_seed(0))
    grid = fixed_grid("uniform-logsnr", model.schedule, ref_steps).gamma
    return z, signal_of(SAMPLERS["dpmpp2m"](model.eps_hat, z, grid.to(z.dtype)), grid[-1])


def squared_errors(model, z, ref, solver: str, euler_last: bool, gammas: torch.Tensor) -> np.ndarray:
    """Each fresh noise's mean squared error of the final signal when ``solver`` walks ``gammas``."""
    gammas = torch.as_tensor(gammas, dtype=torch.float64)
    x = signal_of(get_sampler(solver, euler_last)(model.eps_hat, z, gammas.to(z.dtype)), gammas[-1])
    return (x - ref).double().pow(2).flatten(1).mean(1).numpy()


def rmse_change(e: np.ndarray, base: np.ndarray, draws: int = 200) -> tuple[float, float]:
    """RMSE of ``e`` minus that of ``base`` (per-noise squared errors, the same noises) and its
    paired bootstrap standard error."""
    idx = np.random.default_rng(0).integers(0, len(e), (draws, len(e)))
    d = np.sqrt(e[idx].mean(1)) - np.sqrt(base[idx].mean(1))
    return float(np.sqrt(e.mean()) - np.sqrt(base.mean())), float(d.std(ddof=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--ref-steps", type=int, default=200)
    ap.add_argument("--settings", default="old,default", help=f"comma list of {', '.join(SETTINGS)}")
    ap.add_argument("--cases", default=",".join(f"{s}:{k}" for s, k in CASES), help="comma list of SOLVER:NFE")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    settings = dict(SETTINGS[k] for k in a.settings.split(","))
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in a.cases.split(",")]
    torch.set_grad_enabled(False)
    _, model = resolve_model(a.model)
    z, ref = fresh_reference(model, a.n, a.ref_steps)
    lines = [f"shipped `{a.model}`, {a.n} fresh noises, reference: DPM-Solver++(2M), {a.ref_steps} steps uniform in log-SNR; "
             "cells: RMSE (its difference to EDM's ± paired bootstrap standard error), fit seconds and network calls "
             "(of the fit's 32 rows)", "",
             "| solver | NFE | worst noise's share of EDM's squared error | EDM rho = 7 | "
             + " | ".join(settings) + " |", "|---|---:|---:|---|" + "---|" * len(settings)]
    for solver, nfe in cases:
        steps, euler_last = nfe_budget(solver, nfe)  # Heun on an odd budget: a last Euler step
        edm = squared_errors(model, z, ref, solver, euler_last, fixed_grid("edm", model.schedule, steps).gamma)
        cells = [f"{edm.max() / edm.sum():.0%}", f"{np.sqrt(edm.mean()):.4f}"]
        for kw in settings.values():
            tic = time.time()
            fit = solver_aware(model, solver, steps, generator=torch.Generator().manual_seed(1234), euler_last=euler_last,
                               **kw)
            sec = time.time() - tic
            e = squared_errors(model, z, ref, solver, fit.info["euler_last"], fit.gamma)  # the form it chose
            change, se = rmse_change(e, edm)
            cells.append(f"{np.sqrt(e.mean()):.4f} ({change:+.4f} ± {se:.4f}), "
                         f"{sec:.0f} s, {fit.info['network_calls']} calls")
        lines.append(f"| {solver} | {nfe} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if not a.no_append:
        append_results("Solver-aware fit settings on fresh noise (benchmarks/solver_aware_fit.py)", header(),
                       text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
