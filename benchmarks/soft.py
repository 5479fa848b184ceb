"""Soft diffusion benchmark: blur-plus-noise against plain Gaussian diffusion, same network,
same training wall clock.

Both models are ``SoftDiffusion`` (x0 prediction through v, the per-frequency bound as the loss)
with the dataset's config; the Gaussian one has the blur switched off (``blur_sigma_max=0``), so
the only difference is the corruption. Reports the test bound in bits/dim and, at NFE in
``--nfe``, the Frechet distance to held-out data in the features of the sampling benchmark's
classifier, for the momentum and the naive sampler on a uniform-t (or Wasserstein) grid; saves a figure of sample
grids side by side and appends the table to ``benchmarks/RESULTS.md``.

    python benchmarks/soft.py [--datasets digits,mnist] [--minutes 3] [--nfe 5,10,20,50]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from likelihood import datasets  # noqa: E402
from report import append_results, header  # noqa: E402
from sampling import feature_net, frechet  # noqa: E402

from diffbits.bound import data_to_signal  # noqa: E402
from diffbits.config import RunConfig, apply_overrides  # noqa: E402
from diffbits.data import load_dataset  # noqa: E402
from diffbits.evaluate import evaluate  # noqa: E402
from diffbits.runs import load_run  # noqa: E402
from diffbits.soft import wasserstein_grid  # noqa: E402
from diffbits.train import train  # noqa: E402

CACHE = HERE / ".cache" / "soft"


def train_pair(name: str, minutes: float, mnist: str, fresh: bool, net: str, blur_max: float | None) -> dict:
    """{"blur": run, "gaussian": run}, trained for the same wall clock with the same network."""
    train_spec = datasets(mnist)[name][0]
    runs = {}
    for kind, blur in (("blur", blur_max), ("gaussian", 0.0)):
        run = CACHE / f"{name}-{kind}" if net == "auto" and blur_max is None else CACHE / f"{name}-{kind}-{net}-{blur_max}"
        if fresh or not (run / "checkpoint.pt").exists():
            cfg = RunConfig.load(HERE.parent / "configs" / f"{name}.json")
            cfg = apply_overrides(cfg, ["model.head=eps", "model.process=blur", f"model.blur_sigma_max={json.dumps(blur)}",
                                        f"model.net={net}"])
            cfg.data, cfg.train.minutes, cfg.train.steps = train_spec, minutes, 0
            print(f"[{name}] training the {kind} model for {minutes} min", flush=True)
            train(cfg, run, fresh=True, progress=True)
        runs[kind] = run
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,mnist")
    ap.add_argument("--minutes", type=float, default=3.0, help="training wall clock per model")
    ap.add_argument("--nfe", default="5,10,20,50")
    ap.add_argument("--n", type=int, default=256, help="samples per (model, sampler, NFE)")
    ap.add_argument("--fresh", action="store_true", help="retrain even if cached runs exist")
    ap.add_argument("--net", default="auto", help="the network of both models (model.net)")
    ap.add_argument("--blur-sigma-max", type=float, help="blur at t = 1 in pixels (default: 0.6 x the longer side)")
    ap.add_argument("--grid", choices=["uniform-t", "wasserstein"], default="uniform-t",
                    help="step grid of both samplers (wasserstein: equal W2 between marginals, from training data)")
    ap.add_argument("--mnist", default="/work/shared/data/mnist10k.npz")
    a = ap.parse_args(argv)
    nfes = [int(k) for k in a.nfe.split(",")]
    tables, grids = [], {}
    for name in a.datasets.split(","):
        runs = train_pair(name, a.minutes, a.mnist, a.fresh, a.net, a.blur_sigma_max)
        _, test_spec, split, desc = datasets(a.mnist)[name]
        test = load_dataset(test_spec, split)
        train_f = data_to_signal(load_dataset(datasets(a.mnist)[name][0], "train").x, test.levels, torch.float32)
        net = feature_net(name, train_f)
        test_f = data_to_signal(test.x, test.levels, torch.float32)
        blur_desc = "" if a.blur_sigma_max is None else f", blur sigma_max {a.blur_sigma_max} px"
        rows = [f"**{name}** ({desc}; {a.minutes} min of training each, same network: {a.net}{blur_desc}; {a.grid} grid)", "",
                "| model | steps trained | test bound (bits/dim) | sampler | " + " | ".join(f"FD @ NFE {k}" for k in nfes) + " |",
                "|---|---|---|---|" + "---|" * len(nfes)]
        for kind, run in runs.items():
            cfg, model = load_run(run, "cpu")
            with torch.no_grad():
                res = evaluate(model, test, samples=4, progress=False)
            for sampler in ("momentum", "naive"):
                fds = []
                for nfe in nfes:
                    grid = a.grid if a.grid == "uniform-t" else wasserstein_grid(model.corruption, train_f, nfe)
                    with torch.no_grad():
                        x = model.sample(a.n, nfe, sampler=sampler, grid=grid, generator=torch.Generator().manual_seed(0),
                                         decode=False)
                        fds.append(frechet(net, x.clamp(-1, 1), test_f))
                    if nfe == 20 and sampler == "momentum":
                        grids[(name, kind)] = x[:64]
                rows.append(f"| {kind} | {steps_trained(run)} | {res['bpd']:.4f} | {sampler} | " + " | ".join(f"{v:.1f}" for v in fds) + " |")
                print(rows[-1], flush=True)
        tables.append("\n".join(rows))
    fig = figure(grids, HERE / f"soft-{'-'.join(a.datasets.split(','))}.png")
    text = "\n\n".join(tables) + f"\n\nSample grids (momentum, NFE 20): `{fig.relative_to(HERE.parent)}`\n"
    print(text)
    append_results("Soft diffusion: blur vs Gaussian, momentum vs naive (benchmarks/soft.py)", header(), text)
    return 0


def steps_trained(run: Path) -> int:
    rows = (run / "metrics.jsonl").read_text().splitlines()
    return json.loads(rows[-1])["step"] if rows else 0


def figure(grids: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 3.4), squeeze=False)
    for ax, ((name, kind), x) in zip(axes[0], grids.items()):
        x = x[:, 0].numpy()
        n, h, w = x.shape
        side = int(np.ceil(np.sqrt(n)))
        canvas = np.ones((side * h, side * w))
        for i in range(n):
            r, c = divmod(i, side)
            canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = (x[i] + 1) / 2
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name}: {kind}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
