"""Command-line tool: ``diffbits train | eval | sample | schedule | compress | decompress | nets``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

__all__ = ["main"]


def _add_train(sub):
    p = sub.add_parser("train", help="train a variational diffusion model")
    p.add_argument("--data", help="digits | FILE.npz | FILE.npy | FOLDER (optionally [start:stop])")
    p.add_argument("--out", required=True, type=Path, help="run directory")
    p.add_argument("--minutes", type=float, help="wall-clock budget of this invocation")
    p.add_argument("--steps", type=int, help="total optimiser steps of the run (resume continues up to N)")
    p.add_argument("--config", type=Path, help="JSON config file (see config.json of any run)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. model.width=32 (repeatable)")
    p.add_argument("--seed", type=int)
    p.add_argument("--process", choices=["gaussian", "blur"],
                   help="gaussian (VDM) or blur (soft diffusion: blur plus noise); same as --set model.process=...")
    p.add_argument("--levels", type=int, help="number of levels K (default: inferred)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--fresh", action="store_true", help="delete --out first if it holds a run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_eval(sub):
    p = sub.add_parser("eval", help="bound in bits/dim on held-out data")
    p.add_argument("run", type=Path)
    p.add_argument("--data", help="default: the run's data (its test split for built-in data)")
    p.add_argument("--split", default="test", choices=["train", "test", "all"])
    p.add_argument("--samples", type=int, default=1, help="Monte Carlo draws per example")
    p.add_argument("--T", type=int, default=0, help="discrete-time bound with T steps (0: continuous)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default="auto")


def _add_sample(sub):
    p = sub.add_parser("sample", help="draw samples from a trained run")
    p.add_argument("run", type=Path)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="PNG grid")
    p.add_argument("--npz", type=Path, help="also save the samples as integers under key x")
    p.add_argument("--sampler", help="ancestral | ddim | heun | dpmpp2m; blur models: momentum | naive "
                   "(default: ancestral, blur models momentum)")
    p.add_argument("--schedule", default="uniform-t",
                   help="uniform-t | uniform-logsnr | edm | cosine | GRID.json (from `diffbits schedule`)")
    p.add_argument("--device", default="auto")


def _add_schedule(sub):
    p = sub.add_parser("schedule", help="choose a sampling grid: score-optimal or a fixed step schedule")
    p.add_argument("run", type=Path)
    p.add_argument("--method", default="score-optimal",
                   help="score-optimal | uniform-t | uniform-logsnr | edm | cosine | wasserstein (blur models)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--out", type=Path, required=True, help="GRID.json: times and gammas, noisiest first")
    p.add_argument("--plot", type=Path, help="PNG: the grid beside the fixed schedules (and its costs)")
    p.add_argument("--variant", default="corrector", help="score-optimal cost: corrector | predictor")
    p.add_argument("--probe", type=int, default=100, help="probe-grid points for the cost estimate")
    p.add_argument("--data", help="data to noise for the cost estimate (default: the run's training data)")
    p.add_argument("--n-data", type=int, default=512, help="examples used for the cost estimate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")


def cmd_train(a) -> int:
    from .config import RunConfig, apply_overrides
    from .train import train

    cfg = RunConfig.load(a.config) if a.config else RunConfig()
    cfg = apply_overrides(cfg, a.overrides)
    if a.data:
        cfg.data = a.data
    if a.levels:
        cfg.levels = a.levels
    if a.process:
        cfg.model.process = a.process
    if a.seed is not None:
        cfg.train.seed = a.seed
    if a.minutes is not None:
        cfg.train.minutes = a.minutes
    if a.steps is not None:
        cfg.train.steps = a.steps
    summary = train(cfg, a.out, resume=a.resume, fresh=a.fresh, progress=not a.quiet)
    if "samples" not in summary:  # not the main process of a torchrun job
        return 0
    procs = f" on {summary['processes']} processes" if summary["processes"] > 1 else ""
    print(f"trained to step {summary['step']} ({summary['elapsed_s'] / 60:.1f} min of training{procs})")
    print(f"samples: {summary['samples']}")
    print(f"run: {summary['run_dir']}")
    return 0


def _split(data: str | None, wanted: str) -> str:
    """The run's own data and built-in digits have splits; any other --data is used whole."""
    return wanted if not data or data == "digits" else "all"


def cmd_eval(a) -> int:
    from .data import load_dataset
    from .evaluate import evaluate
    from .train import load_run

    cfg, model = load_run(a.run, a.device)
    split = _split(a.data, a.split)
    data = load_dataset(a.data or cfg.data, split, cfg.levels)
    res = evaluate(model, data, samples=a.samples, T=a.T or None, batch_size=a.batch_size, seed=a.seed,
                   progress=not a.json)
    res["run"] = str(a.run)
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{res['data']}: {res['n']} examples x {res['samples']} draws, T = {res['T']}")
    print(f"  prior      {res['prior_bpd']:.4f} bits/dim")
    print(f"  recon      {res['recon_bpd']:.4f} bits/dim")
    print(f"  diffusion  {res['diffusion_bpd']:.4f} bits/dim")
    label = {"test": "test bound", "train": "train bound"}.get(split, "bound")
    print(f"{label}: {res['bpd']:.2f} bits/dim (+/- {res['stderr']:.3f} s.e.)")
    print(f"run: {a.run}")
    return 0


def cmd_sample(a) -> int:
    import numpy as np
    import torch

    from .plots import save_grid
    from .step_schedules import Grid
    from .train import load_run

    cfg, model = load_run(a.run, a.device)
    grid = Grid.load(a.schedule) if a.schedule.endswith(".json") else a.schedule
    gen = torch.Generator().manual_seed(a.seed)
    sampler = a.sampler or ("momentum" if cfg.model.process == "blur" else "ancestral")
    x = model.sample(a.n, a.steps, generator=gen, progress=True, sampler=sampler, grid=grid).cpu()
    print(f"samples: {save_grid(x, cfg.levels, a.out)}")
    if a.npz:
        a.npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(a.npz, x=x.numpy())
        print(f"arrays: {a.npz}")
    return 0


def cmd_schedule(a) -> int:
    import torch

    from .bound import data_to_signal
    from .data import load_dataset
    from .plots import plot_step_grid
    from .score_optimal import score_optimal
    from .step_schedules import FIXED, fixed_grid
    from .train import load_run

    cfg, model = load_run(a.run, a.device)
    blur = cfg.model.process == "blur"
    if blur and a.method not in ("wasserstein", "uniform-t"):
        raise ValueError(f"blur models take --method wasserstein or uniform-t, not {a.method!r}")
    if a.method == "wasserstein" and not blur:
        raise ValueError("--method wasserstein is for blur models (train with --process blur)")
    if a.method in ("score-optimal", "wasserstein"):
        data = load_dataset(a.data or cfg.data, _split(a.data, "train"), cfg.levels)
        gen = torch.Generator().manual_seed(a.seed)
        idx = torch.randperm(len(data.x), generator=gen)[: a.n_data]
        dev = model.schedule.gamma_0.device
        f = data_to_signal(data.x[idx].to(dev), cfg.levels, torch.float32)
    if a.method == "wasserstein":
        from .soft import wasserstein_grid

        grid = wasserstein_grid(model.corruption, f, a.steps)
        print(f"W2 length of the path: {grid.info['total_w2_length']:.3g}, "
              f"{grid.info['total_w2_length'] / a.steps:.3g} per step")
    elif a.method == "score-optimal":
        grid = score_optimal(model, f, a.steps, probe=a.probe, variant=a.variant,
                             generator=torch.Generator(dev).manual_seed(a.seed), progress=True)
        length = torch.tensor(grid.info["length_per_step"])
        print("estimated cost (length) per step: " + " ".join(f"{c:.3g}" for c in length.tolist()))
        print(f"  max / min: {(length.max() / length.min()).item():.2f} (equal cost per step: 1)")
    else:
        grid = fixed_grid(a.method, model.schedule, a.steps)
    print("gamma: " + " ".join(f"{g:.2f}" for g in grid.gamma.tolist()))
    print(f"grid: {grid.save(a.out)}")
    if a.plot:
        others = [fixed_grid(m, model.schedule, a.steps) for m in FIXED if m != a.method and not (blur and m != "uniform-t")]
        print(f"plot: {plot_step_grid(grid, others, a.plot)}")
    return 0


def _add_codec(sub):
    p = sub.add_parser("compress", help="lossless compression with a trained model (bits-back coding)")
    p.add_argument("run", type=Path)
    p.add_argument("inputs", type=Path, nargs="+", help="image files, .npy or .npz arrays of the model's shape")
    p.add_argument("-o", "--out", type=Path, required=True, help="the .dbits file to write")
    p.add_argument("--T", type=int, default=100, help="steps of the discrete-time chain")
    p.add_argument("--resolution", type=float, default=4.0, help="latent lattice: standard deviations / width")
    p.add_argument("--batch", type=int, default=64, help="examples coded side by side")
    p.add_argument("--draws", type=int, default=4, help="time strata per example for the bound beside the rate (T: every step once)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("decompress", help="restore every item of a .dbits file, bit-exact")
    p.add_argument("file", type=Path)
    p.add_argument("--model", type=Path, required=True, help="the run that compressed it")
    p.add_argument("-o", "--out", type=Path, required=True, help="folder for the restored files")


def cmd_compress(a) -> int:
    from .codec import compress

    rep = compress(a.run, a.inputs, a.out, T=a.T, resolution=a.resolution, batch=a.batch, draws=a.draws,
                   progress=not a.json)
    if a.json:
        print(json.dumps(rep))
        return 0
    for r in rep["items"]:
        flag = "  (fallback: deflate)" if r["fallback"] else ""
        print(f"{r['name']}: {r['examples']} examples, {r['bpd']:.4f} bits/dim (net {r['net_bpd']:.4f}, "
              f"bound {r['bound_bpd']:.4f}){flag}")
    t = rep["total"]
    print(f"total: {t['bytes']} bytes, {t['bpd']:.4f} bits/dim (net of {t['initial_bits']} initial bits: "
          f"{t['net_bpd']:.4f}; bound at T={t['T']}: {t['bound_bpd']:.4f}) in {t['encode_s']:.1f} s -> {a.out}")
    return 0


def cmd_decompress(a) -> int:
    from .codec import decompress

    for p in decompress(a.file, a.model, a.out, progress=True):
        print(p)
    return 0


def _add_nets(sub):
    p = sub.add_parser("nets", help="parameters and FLOPs per forward pass of each denoiser")
    p.add_argument("--size", type=int, default=32, help="image side (square images)")
    p.add_argument("--channels", type=int, default=3, help="image channels")
    p.add_argument("--width", type=int, help="base width shared by the networks (default: the config's)")
    p.add_argument("--levels", type=int, default=256, help="data levels (for the Fourier features)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_nets(a) -> int:
    from .build import build_denoiser
    from .config import ModelConfig
    from .nets import cost

    if a.size < 1 or a.channels < 1:
        raise ValueError("--size and --channels must be positive")
    base = ModelConfig() if a.width is None else ModelConfig(width=a.width)
    shape = (a.channels, a.size, a.size)
    out = {name: cost(build_denoiser(dataclasses.replace(base, net=net), shape, a.levels), shape)
           for name, net in (("ScoreUNet", "score_unet"), ("UNet", "unet"), ("ContinuousUNet", "continuous_unet"))}
    if a.json:
        print(json.dumps(out))
        return 0
    ref = out["UNet"]
    print(f"{a.channels}x{a.size}x{a.size}, base width {base.width}")
    print(f"{'network':<16}{'params':>12}{'GFLOPs':>10}{'params/UNet':>13}{'FLOPs/UNet':>12}")
    for name, c in out.items():
        print(f"{name:<16}{c['params']:>12,}{c['flops'] / 1e9:>10.3f}{c['params'] / ref['params']:>13.3f}"
              f"{c['flops'] / ref['flops']:>12.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diffbits", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_train(sub)
    _add_eval(sub)
    _add_sample(sub)
    _add_schedule(sub)
    _add_codec(sub)
    _add_nets(sub)
    a = parser.parse_args(argv)
    from .data import DataError
    from .train import RunExists, TrainingDiverged

    try:
        return {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "schedule": cmd_schedule,
                "compress": cmd_compress, "decompress": cmd_decompress, "nets": cmd_nets}[a.cmd](a)
    except (DataError, RunExists, TrainingDiverged, FileNotFoundError, ValueError, TypeError) as e:
        print(f"diffbits {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffbits {a.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
