"""Subnormal floats on the CPU: a trained network's steps with and without flush-to-zero.

A 60-minute digits run slowed from 290 to 150 examples/s with nothing beside it: as the network
converges, its activations and gradients hold more subnormal numbers (below 1.2e-38), and
x86 cores take a slow path for every operation on one. ``import diffbits`` now sets
flush-to-zero (``precision.flush_denormals``). This measures what that buys, on a trained
model and on the same network freshly initialised, for a training step (forward, backward,
AdamW) and for an inference call (what sampling and the codec do). Each measurement is its
own process (the mode must be set before torch's thread pool starts), the modes alternate
(A B A B ...), the median is taken. Appends the table to ``benchmarks/RESULTS.md``.

    python benchmarks/denormals.py [--model digits] [--rounds 4] [--seconds 8]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import append_results, header  # noqa: E402

CASES = [(net, kind) for net in ("trained", "fresh") for kind in ("train step", "inference")]


def child(model: str, net: str, kind: str, flush: bool, seconds: float, batch: int, threads: int) -> float:
    """Seconds per step, in this process: the mode is set before any parallel op."""
    import torch

    import diffbits  # noqa: F401  (sets flush-to-zero; undone below for the 'off' runs)
    from diffbits.bound import signal_to_data
    from diffbits.build import build_model
    from diffbits.runs import resolve_model, signal_examples

    torch.set_flush_denormal(flush)
    torch.set_num_threads(threads)
    probe = int((torch.full((1 << 20,), 1e-39) * 1.0).count_nonzero())
    assert probe == (0 if flush else 1 << 20), f"flush={flush} did not reach every thread ({probe})"
    cfg, model = resolve_model(model)
    if net == "fresh":
        torch.manual_seed(0)
        model = build_model(cfg.model, tuple(model.data_shape), cfg.levels)
    f = signal_examples(cfg, model, None, batch, seed=0)
    x = signal_to_data(f, cfg.levels)  # integer levels, as training sees them
    if kind == "train step":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            terms = model.loss_terms(x)
            opt.zero_grad(set_to_none=True)
            (terms.prior + terms.recon + terms.diffusion).mean().backward()
            opt.step()
    else:
        model.eval()
        gamma = torch.linspace(-5.0, 5.0, batch)
        z = torch.randn_like(f)

        def step():
            with torch.no_grad():
                model.eps_hat(z, gamma)
    for _ in range(3):
        step()
    n, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < seconds:
        step()
        n += 1
    return (time.perf_counter() - tic) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits", help="a shipped model's name or a run directory")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=3, metavar=("NET", "KIND", "FLUSH"), help=argparse.SUPPRESS)
    ap.add_argument("--no-append", action="store_true", help="print the table only (a check, not a record)")
    a = ap.parse_args(argv)
    if a.child:
        net, kind, flush = a.child
        print(json.dumps(child(a.model, net, kind, flush == "on", a.seconds, a.batch, a.threads)))
        return 0
    times = {(net, kind, mode): [] for net, kind in CASES for mode in ("off", "on")}
    for r in range(a.rounds):
        for net, kind in CASES:
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                cmd = [sys.executable, __file__, "--model", a.model, "--seconds", str(a.seconds), "--batch",
                       str(a.batch), "--threads", str(a.threads), "--child", net, kind, mode]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                times[net, kind, mode].append(float(out.strip().splitlines()[-1]))
                print(f"round {r + 1}/{a.rounds}: {net} {kind} flush {mode}: {1e3 * times[net, kind, mode][-1]:.1f} ms",
                      flush=True)
    rows = [f"Model `{a.model}`, batch {a.batch}, {a.threads} threads; median of {a.rounds} measurements of "
            f"{a.seconds:g} s each, the two modes alternating, each in its own process.", "",
            "| network | call | subnormals kept (ms) | flushed to zero (ms) | kept ÷ flushed |", "|---|---|---:|---:|---:|"]
    for net, kind in CASES:
        off, on = (statistics.median(times[net, kind, m]) for m in ("off", "on"))
        rows.append(f"| {net} | {kind} | {1e3 * off:.1f} | {1e3 * on:.1f} | {off / on:.2f} |")
    table = "\n".join(rows)
    print(table)
    if not a.no_append:
        append_results("Subnormal floats: steps with and without flush-to-zero (benchmarks/denormals.py)", header(), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
