"""Which candidate the solver-aware fit should start from, judged on fresh noise (docs/samplers.md section 4).

The fit solves each candidate grid (its dynamic-programme path, the fixed grids, the score-optimal
corrector grid as a seed) from its 32 noises and keeps the one with the least mean squared error.
Candidates often differ by less than that mean's noise. Here, on shipped models and for each
(solver, NFE), every candidate of the default fit is also walked from ``--n`` fresh noises, against a
DPM-Solver++(2M) reference of ``--ref-steps`` steps. Each selection rule is scored by the fresh RMSE of
the candidate it picks:
- ``least``: the lowest mean on the fit's noises (the fit's rule until December 2026);
- ``dp-k``: the dynamic-programme path, unless another candidate lowers the fit noises' mean squared
  error by more than ``k`` standard errors of the paired per-noise change, then the lowest of those
  (``solver_aware.choose_start``; ``least`` is its ``test = 0``).
The fit's refinement (DPM-Solver++(2M), DDIM) starts from the chosen candidate; the fresh errors here
are the candidates' own, before it. Prints a table and appends it to ``benchmarks/RESULTS.md``.

    python benchmarks/solver_aware_start.py [--models digits,mnist] [--cases heun:5,...] [--n 256]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import append_results, header  # noqa: E402
from solver_aware_fit import fresh_reference, rmse_change, squared_errors  # noqa: E402

from diffbits.runs import resolve_model, signal_examples  # noqa: E402
from diffbits.samplers import nfe_budget  # noqa: E402
from diffbits.score_optimal import probe_costs, score_optimal  # noqa: E402
from diffbits.solver_aware import DP_PATH, choose_start, solver_aware  # noqa: E402

CASES = "heun:5,heun:10,heun:20,dpmpp2m:5,dpmpp2m:10,dpmpp2m:20"
RULES = {"least": 0.0, "dp-1": 1.0, "dp-2": 2.0}  # choose_start's test


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,mnist")
    ap.add_argument("--cases", default=CASES, help="comma list of SOLVER:NFE")
    ap.add_argument("--n", type=int, default=0, help="fresh noises (default: digits 512, others 128)")
    ap.add_argument("--ref-steps", type=int, default=200)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in a.cases.split(",")]
    torch.set_grad_enabled(False)
    lines = [f"{a.n or 'digits 512, others 128'} fresh noises, reference: DPM-Solver++(2M), {a.ref_steps} steps "
             "uniform in log-SNR. "
             "Candidates: the fit's RMSE on its 32 noises, then on the fresh ones (its difference to the "
             "dynamic-programme path's ± paired bootstrap standard error); the rules' columns: the candidate "
             "each picks and its fresh RMSE.", "",
             "| model | solver | NFE | candidates: fit noises / fresh (vs the DP path) | "
             + " | ".join(RULES) + " |", "|---|---|---:|---|" + "---|" * len(RULES)]
    totals = {r: [] for r in RULES}
    for name in a.models.split(","):
        cfg, model = resolve_model(name)
        z, ref = fresh_reference(model, a.n or (512 if name == "digits" else 128), a.ref_steps)
        costs = probe_costs(model, signal_examples(cfg, model, None, 256, 1), 100, "corrector",
                            generator=torch.Generator().manual_seed(2))
        for solver, nfe in cases:
            steps, euler_last = nfe_budget(solver, nfe)
            seed = score_optimal(model, None, steps, variant="corrector", costs=costs).gamma
            fit = solver_aware(model, solver, steps, seeds={"score-optimal (corrector)": seed}, euler_last=euler_last,
                               sweeps=0, generator=torch.Generator().manual_seed(1234))  # the candidates only
            info = fit.info
            fresh = {n: squared_errors(model, z, ref, solver, info["candidate_euler_last"][n], g)
                     for n, g in info["candidates"].items()}
            cells = []
            for n, e in fresh.items():
                change, se = rmse_change(e, fresh[DP_PATH])
                vs = "" if n == DP_PATH else f" ({change:+.4f} ± {se:.4f})"
                cells.append(f"{n} {info['candidate_errors'][n]:.4f} / {np.sqrt(e.mean()):.4f}{vs}")
            picks = {r: choose_start(info["candidate_errors"], info["candidate_versus_dp"], k)
                     for r, k in RULES.items()}
            for r, n in picks.items():
                totals[r].append(np.sqrt(fresh[n].mean()) / np.sqrt(fresh["edm"].mean()))
            lines.append(f"| {name} | {solver} | {nfe} | " + "; ".join(cells) + " | "
                         + " | ".join(f"{n}, {np.sqrt(fresh[n].mean()):.4f}" for n in picks.values()) + " |")
            print(lines[-1], flush=True)
    lines += ["", "Geometric mean over the cases of each rule's fresh RMSE over EDM rho = 7's: " + ", ".join(
        f"{r} {np.exp(np.mean(np.log(v))):.4f}" for r, v in totals.items())]
    text = "\n".join(lines)
    print(text)
    if not a.no_append:
        append_results("Solver-aware fit: which candidate to start from, on fresh noise "
                       "(benchmarks/solver_aware_start.py)", header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
