"""Variance of the bound's Monte Carlo estimate, with and without variance minimisation.

Two measurements on ``digits`` (docs/schedules.md sections 3-4, eqs. 9-12):

1. Train two models for the same wall clock, the learned schedule's interior trained to
   minimise ``E[L_diff^2]`` (ours, default) or left to the bound's own gradient (which is
   zero in expectation, so the interior just drifts). Report the held-out bound and the
   standard deviation of a single-draw per-example estimate (``mc_std_bpd``).
2. Same trained denoiser, same endpoints, different interiors: the learned one against a
   linear one. The continuous bound is invariant to the interior, so the means agree and
   only the variance differs; this isolates what the learned interior buys.

    python benchmarks/variance.py [--minutes 2] [--samples 16]

Prints a markdown table and appends it to ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from diffbits.config import RunConfig, apply_overrides
from diffbits.data import load_dataset
from diffbits.evaluate import evaluate
from diffbits.schedules import FixedLinear
from diffbits.train import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from report import append_results, header  # noqa: E402


def train_for(minutes: float, overrides: list[str], run_dir: Path) -> Trainer:
    cfg = apply_overrides(RunConfig.load(Path(__file__).parents[1] / "configs" / "digits.json"), overrides)
    cfg.train.minutes = minutes
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer.create(cfg, run_dir)
    trainer.fit(progress=False)
    return trainer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="training wall clock per model")
    ap.add_argument("--samples", type=int, default=16, help="Monte Carlo draws per test example")
    a = ap.parse_args(argv)
    test = load_dataset("digits", "test")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, flag in (("variance-minimised interior", "true"), ("bound-gradient interior", "false")):
            tr = train_for(a.minutes, [f"model.variance_min={flag}"], Path(tmp) / flag)
            models[name] = tr.ema.module.eval()
            res = evaluate(models[name], test, samples=a.samples, progress=False)
            rows.append((f"trained: {name}", tr.step, res))
        # Same denoiser and endpoints, the interior swapped for a straight line.
        model = models["variance-minimised interior"]
        learned = model.schedule
        with torch.no_grad():
            model.schedule = FixedLinear(learned.gamma_0.item(), learned.gamma_1.item())
        rows.append(("same model, linear interior", "", evaluate(model, test, samples=a.samples, progress=False)))
        model.schedule = learned

    lines = [
        f"| digits test ({a.minutes:g} min each, {a.samples} draws/example) | steps | bound (bits/dim) | s.e. | "
        "single-draw std (bits/dim) | variance ratio |",
        "|---|---|---|---|---|---|",
    ]
    base = rows[0][2]["mc_std_bpd"] ** 2
    for name, steps, r in rows:
        lines.append(f"| {name} | {steps} | {r['bpd']:.3f} | {r['stderr']:.3f} | {r['mc_std_bpd']:.3f} | "
                     f"{r['mc_std_bpd'] ** 2 / base:.2f} |")
    text = "\n".join(lines)
    print(text)
    append_results("Variance of the bound estimate (benchmarks/variance.py)", header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
