"""The probability-flow ODE NLL beside the variational bound, on a trained digits run.

Both on the digits test split: the bound (continuous time, ``--samples`` draws per example)
and the ODE NLL with uniform dequantisation (an upper bound on the discrete NLL; dopri5 at
``--tol``, ``--probes`` Hutchinson probes). Appends the table to RESULTS.md.

    python benchmarks/ode.py [--run benchmarks/.cache/likelihood/digits/ours] [--tol 1e-3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import append_results, header  # noqa: E402

from diffbits.data import load_dataset  # noqa: E402
from diffbits.evaluate import evaluate  # noqa: E402
from diffbits.ode_likelihood import evaluate_ode  # noqa: E402
from diffbits.runs import load_run  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=HERE / ".cache" / "likelihood" / "digits" / "ours")
    ap.add_argument("--tol", type=float, default=1e-3, help="rtol = atol of the ODE solver")
    ap.add_argument("--probes", type=int, default=1)
    ap.add_argument("--samples", type=int, default=8, help="bound: draws per example")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    cfg, model = load_run(a.run, "cpu")
    data = load_dataset(cfg.data, "test", cfg.levels)
    tic = time.perf_counter()
    b = evaluate(model, data, samples=a.samples, progress=False)
    t_bound = time.perf_counter() - tic
    tic = time.perf_counter()
    o = evaluate_ode(model, data, probes=a.probes, rtol=a.tol, atol=a.tol, progress=True)
    t_ode = time.perf_counter() - tic
    text = "\n".join([
        "| method | test bits/dim | s.e. | seconds |", "|---|---|---|---|",
        f"| variational bound (continuous time, {a.samples} draws) | {b['bpd']:.4f} | {b['stderr']:.4f} | {t_bound:.0f} |",
        f"| probability-flow ODE, uniform dequantisation (dopri5, tol {a.tol:g}, {a.probes} probe) "
        f"| {o['bpd']:.4f} | {o['stderr']:.4f} | {t_ode:.0f} |",
        "", f"- run {a.run.relative_to(HERE.parent) if a.run.is_relative_to(HERE.parent) else a.run} "
        f"(gamma_0 = {model.schedule.gamma_0.item():.2f}), {b['n']} test digits; {o['nfe']:.0f} drift evaluations per batch",
        "- the ODE figure is an upper bound on the discrete NLL; a model that has learned the bins pays "
        "roughly 1/2 log 2 pi e^gamma_0 + log(K/2) nats/dim for uniform dequantisation "
        "(see src/diffbits/ode_likelihood.py)"])
    print(text)
    if not a.no_append:
        append_results("ODE likelihood against the bound on digits (benchmarks/ode.py)", header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
