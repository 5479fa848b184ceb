"""``diffbits sample`` and ``diffbits grid``: draw from a run, and choose the noise levels a sampler visits."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_device, add_grid, add_nfe, add_seed, call_budget, class_labels, command, grid_name, warn


def add_parsers(sub) -> None:
    p = command(sub, "sample", run_sample, "draw samples from a trained run",
                "Draw --n samples and write them in the run's own data format: -o FILE.npy / FILE.npz (key x),\n"
                "or -o FILE.png for image data (one PNG per sample, FILE_0.png ... when --n > 1, the data's\n"
                "levels unscaled). --preview writes a picture grid to look at.")
    p.add_argument("run", type=Path, help="a run directory")
    p.add_argument("-o", "--out", type=Path, help="FILE.npy | FILE.npz | FILE.png: the samples")
    p.add_argument("--preview", type=Path, help="FILE.png: a grid of the samples to look at (scaled to 0..255)")
    p.add_argument("--npz", type=Path, help=argparse.SUPPRESS)  # deprecated: -o FILE.npz
    p.add_argument("--n", type=int, default=64, help="number of samples (per class, on conditional runs)")
    add_grid(p, steps=250, sampler_help="ancestral | ddim | heun | dpmpp2m; blur models: momentum | naive", nfe=True)
    add_seed(p)
    p.add_argument("--class", dest="classes", action="append", metavar="C",
                   help="conditional runs: class name or index (repeatable; default: every class, one row each)")
    p.add_argument("--guidance", type=float, default=1.0,
                   help="classifier-free guidance w: eps_u + w (eps_c - eps_u); 1 conditional, 0 unconditional")
    add_device(p)

    p = command(sub, "grid", run_grid_command, "choose a sampling grid: score-optimal, solver-aware or a fixed one",
                "Write the noise levels an N-step sampler visits (times and gammas, noisiest first) to a JSON file\n"
                "that `sample --grid FILE.json` takes. `sample --grid score-optimal` (or solver-aware) does the\n"
                "same inline. solver-aware fits the grid to one solver (--sampler ddim | heun | dpmpp2m): the\n"
                "grid whose samples land nearest a fine reference solution from the same noises.",
                aliases=["schedule"])
    p.add_argument("run", type=Path, help="a run directory")
    p.add_argument("--method", default="score-optimal",
                   help="score-optimal | solver-aware | uniform-t | uniform-logsnr | edm | cosine | wasserstein "
                        "(blur models)")
    p.add_argument("--sampler", help="solver-aware: the solver that will walk the grid (ddim | heun | dpmpp2m)")
    p.add_argument("--steps", type=int, default=None, help="steps of the grid (default: 10, or what --nfe allows)")
    add_nfe(p)
    p.add_argument("-o", "--out", type=Path, required=True, help="GRID.json: times and gammas, noisiest first")
    p.add_argument("--plot", type=Path, help="PNG: the grid beside the fixed grids (and its costs)")
    p.add_argument("--variant", default="corrector", choices=["corrector", "predictor"],
                   help="score-optimal cost (Williams et al. 2024): corrector or predictor")
    p.add_argument("--data", help="data to noise for the cost estimate (default: the run's training data)")
    p.add_argument("--check", action="store_true",
                   help="score-optimal: re-estimate each chosen step's cost with fresh noise (equal when it works)")
    add_seed(p)
    add_device(p)


def run_sample(a) -> int:
    import torch

    from ..io import samples_meta, write_samples
    from ..plots import save_grid
    from ..runs import load_run, run_grid

    if a.npz is not None:
        warn("--npz is deprecated; use -o FILE.npz")
        if a.out is not None and a.out != a.npz:
            raise ValueError("give -o only (--npz is its deprecated name)")
        a.out = a.npz
    if a.out is None and a.preview is None:
        raise ValueError("say where the samples go: -o FILE.npy|.npz|.png and/or --preview GRID.png")
    if a.n < 1:
        raise ValueError(f"--n must be at least 1, got {a.n}")
    cfg, model = load_run(a.run, a.device)
    if a.out is not None:
        samples_meta(a.out, cfg.shape, cfg.levels, cfg.dtype)  # a wrong suffix fails before sampling
    sampler = a.sampler or ("momentum" if cfg.model.process == "blur" else "ancestral")
    steps, euler_last = call_budget(a, sampler, 250)
    grid = run_grid(a.run, cfg, model, grid_name(a), steps, progress=True, sampler=a.sampler, euler_last=euler_last)
    if a.nfe is not None and grid.steps != steps:
        raise ValueError(f"--nfe {a.nfe} buys {sampler} {steps} steps; the grid has {grid.steps}")
    gen = torch.Generator().manual_seed(a.seed)
    cond, cols, n = class_labels(cfg, a.classes, a.guidance, a.run), None, a.n
    if cond is not None:  # one row of n per class
        cond, cols = cond.repeat_interleave(a.n), a.n
        n = len(cond)
    x = model.sample(n, grid.steps, cond=cond, guidance=a.guidance, generator=gen, progress=True, sampler=sampler,
                     grid=grid, euler_last=euler_last).cpu()
    if a.out is not None:
        paths = write_samples(x.numpy(), a.out, cfg.shape, cfg.levels, cfg.dtype)
        print(f"samples: {paths[0]}" + (f" ... {paths[-1].name} ({len(paths)} files)" if len(paths) > 1 else ""))
    if a.preview is not None:
        print(f"preview: {save_grid(x, cfg.levels, a.preview, cols=cols)}")
    return 0


def run_grid_command(a) -> int:
    from ..grids import FIXED, fixed_grid
    from ..plots import plot_step_grid
    from ..runs import load_run, run_grid, signal_examples
    from ..score_optimal import EXAMPLES, step_lengths

    if a.cmd == "schedule":
        warn("`diffbits schedule` is deprecated (it makes a sampling grid, not a noise schedule); use `diffbits grid`")
    steps, euler_last = call_budget(a, a.sampler, 10)
    cfg, model = load_run(a.run, a.device)
    grid = run_grid(a.run, cfg, model, a.method, steps, data=a.data, variant=a.variant, seed=a.seed, progress=True,
                    sampler=a.sampler, euler_last=euler_last)
    if a.method == "solver-aware":
        i = grid.info
        last = "" if not i["euler_last"] else (f" (the last an Euler step: {2 * steps - 1} calls a sample)"
                                              if a.sampler == "heun" else " (the last step first order, DDIM's)")
        print(f"{a.sampler}, {steps} steps{last}: RMS error {i['error']:.4g} against a {i['lattice']}-level reference "
              f"({i['examples']} noises; started from the {i['start']} grid: "
              + ", ".join(f"{k} {v:.4g}" for k, v in i["candidate_errors"].items())
              + f"); {i['network_calls']:,} network calls of {i['rows_per_call']} rows, {i['seconds']:.1f} s")
    if a.method == "wasserstein":
        print(f"W2 length of the path: {grid.info['total_w2_length']:.3g}, "
              f"{grid.info['total_w2_length'] / steps:.3g} per step")
    if a.method == "score-optimal" and a.check:
        f = signal_examples(cfg, model, a.data, EXAMPLES, a.seed + 1)  # fresh examples and noise
        length = step_lengths(model, f, grid, a.variant)
        grid.info["length_per_step"] = length.tolist()
        print("estimated cost (length) per step: " + " ".join(f"{c:.3g}" for c in length.tolist()))
        print(f"  max / min: {(length.max() / length.min()).item():.2f} (equal cost per step: 1)")
    if euler_last:  # `sample --grid FILE --sampler heun` walks it as it was chosen for
        grid.info["euler_last"] = True
    print("gamma: " + " ".join(f"{g:.2f}" for g in grid.gamma.tolist()))
    print(f"grid: {grid.save(a.out)}")
    if a.plot:
        blur = cfg.model.process == "blur"
        others = [fixed_grid(m, model.schedule, steps) for m in FIXED if m != a.method and not (blur and m != "uniform-t")]
        print(f"plot: {plot_step_grid(grid, others, a.plot)}")
    return 0
