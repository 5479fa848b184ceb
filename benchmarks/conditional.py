"""Class-conditional digits: the bound of p(x | y) beside p(x), and what guidance does to samples.

Trains a conditional VDM on the digits (``--labels target``, label dropout 0.1) for a wall-clock
budget, then on the test split reports the bound with the true labels (``-log p(x | y)``) and
with "no label" (``-log p(x)``, the same network). Exact likelihoods could differ by at most
log2(10) / 64 = 0.052 bits/dim; a larger gap between the bounds says the no-label mode, trained
on only ``label_dropout`` of the batches, is the weaker model. And for guidance w in ``--guidance`` draws samples of every class and scores them with
a logistic-regression classifier fitted on the training digits (accuracy: does the sample show
its class?). Writes one grid per w (a row per class) and appends the table to RESULTS.md.

    python benchmarks/conditional.py [--minutes 3] [--guidance 0,1,2,4] [--per-class 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import append_results, header  # noqa: E402

from diffbits.config import RunConfig, apply_overrides  # noqa: E402
from diffbits.data import load_dataset  # noqa: E402
from diffbits.evaluate import evaluate  # noqa: E402
from diffbits.plots import save_grid  # noqa: E402
from diffbits.train import train  # noqa: E402

RUN = HERE / ".cache" / "conditional" / "digits"


def classifier():
    from sklearn.linear_model import LogisticRegression

    d = load_dataset("digits", "train", labels="target")
    return LogisticRegression(max_iter=2000).fit(d.x.flatten(1).numpy(), d.y.numpy())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--guidance", default="0,1,2,4")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100, help="sampling steps")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)

    cfg = apply_overrides(RunConfig.load(HERE.parent / "configs" / "digits.json"), ["labels=target"])
    cfg.train.minutes, cfg.train.steps = a.minutes, 0
    summary = train(cfg, RUN, fresh=True, progress=False)
    run_cfg = RunConfig.load(RUN / "config.json")
    from diffbits.runs import load_run

    _, model = load_run(RUN, "cpu")
    test = load_dataset("digits", "test", run_cfg.levels, labels="target")
    cond = evaluate(model, test, samples=8, progress=False)
    test.y = None
    model.num_classes, k = 0, model.num_classes  # the same network with "no label"
    uncond = evaluate(model, test, samples=8, progress=False)
    model.num_classes = k

    clf = classifier()
    real = load_dataset("digits", "test", labels="target")
    real_acc = float(np.mean(clf.predict(real.x.flatten(1).numpy()) == real.y.numpy()))
    rows = ["| labels | test bound (bits/dim) | s.e. |", "|---|---|---|",
            f"| true labels, -log p(x \\| y) | {cond['bpd']:.4f} | {cond['stderr']:.4f} |",
            f"| no label, -log p(x) | {uncond['bpd']:.4f} | {uncond['stderr']:.4f} |",
            "", "| guidance w | classifier accuracy on samples | grid |", "|---|---|---|"]
    y = torch.arange(k).repeat_interleave(a.per_class)
    for w in (float(v) for v in a.guidance.split(",")):
        x = model.sample(len(y), a.steps, cond=y, guidance=w, generator=torch.Generator().manual_seed(0))
        acc = float(np.mean(clf.predict(x.flatten(1).numpy()) == y.numpy()))
        grid = save_grid(x[(torch.arange(len(y)) % a.per_class) < 8], run_cfg.levels,
                         HERE / f"conditional-w{w:g}.png", cols=8)
        rows.append(f"| {w:g} | {acc:.3f} | {grid.relative_to(HERE.parent)} |")
        print(rows[-1], flush=True)
    notes = (f"\n- exact likelihoods would differ by at most log2(10)/64 = 0.052 bits/dim; a larger gap between "
             f"the bounds means the no-label mode (trained on {run_cfg.model.label_dropout} of the batches) is the "
             f"weaker model\n- conditional ScoreUNet (configs/digits.json, labels=target, label dropout "
             f"{run_cfg.model.label_dropout}), {summary['step']} steps in {a.minutes} min; bounds with 8 draws per "
             f"test example; {a.per_class} samples per class, {a.steps} ancestral steps; classifier: logistic "
             f"regression on the 1500 training digits, {real_acc:.3f} accurate on the 297 real test digits")
    text = "\n".join(rows) + "\n" + notes
    print(text)
    if not a.no_append:
        append_results("Class-conditional digits (benchmarks/conditional.py)", header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
