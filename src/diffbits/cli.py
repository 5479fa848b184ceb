"""Command-line tool: ``diffbits train | eval | sample | schedule | compress | decompress | nets | denoise | inpaint``."""
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
    p.add_argument("--labels", help="train a class-conditional model on these labels: target (digits) | "
                   "KEY (an array in the --data npz) | folders (one sub-folder per class)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--fresh", action="store_true", help="delete --out first if it holds a run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_eval(sub):
    p = sub.add_parser("eval", help="bound (or ODE NLL) in bits/dim on held-out data")
    p.add_argument("run", type=Path)
    p.add_argument("--data", help="default: the run's data (its test split for built-in data)")
    p.add_argument("--split", default="test", choices=["train", "test", "all"])
    p.add_argument("--samples", type=int, default=1, help="Monte Carlo draws per example")
    p.add_argument("--T", type=int, default=0, help="discrete-time bound with T steps (0: continuous)")
    p.add_argument("--method", default="bound", choices=["bound", "ode"],
                   help="bound: the variational bound; ode: probability-flow ODE NLL (dequantised upper bound)")
    p.add_argument("--rtol", type=float, default=1e-5, help="--method ode: relative tolerance of the solver")
    p.add_argument("--atol", type=float, default=1e-5, help="--method ode: absolute tolerance of the solver")
    p.add_argument("--hutchinson", type=int, default=1, metavar="N",
                   help="--method ode: Hutchinson probes of the divergence (0: exact trace, D backward passes)")
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
    p.add_argument("--class", dest="classes", action="append", metavar="C",
                   help="conditional runs: class name or index (repeatable; default: every class, one row each)")
    p.add_argument("--guidance", type=float, default=1.0,
                   help="classifier-free guidance w: eps_u + w (eps_c - eps_u); 1 conditional, 0 unconditional")
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
    if a.labels:
        cfg.labels = a.labels
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


def _eval_ode(a, model, data, split: str) -> int:
    from .ode_likelihood import evaluate_ode

    if a.T or a.samples != 1:
        raise ValueError("--T and --samples are for --method bound")
    res = evaluate_ode(model, data, probes=a.hutchinson, exact_trace=a.hutchinson == 0, rtol=a.rtol, atol=a.atol,
                       batch_size=a.batch_size, seed=a.seed, progress=not a.json)
    res["run"] = str(a.run)
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{res['data']}: {res['n']} examples, probability-flow ODE ({res['solver']}, rtol {res['rtol']:g}, "
          f"atol {res['atol']:g}), trace: {res['trace']}, {res['nfe']:.0f} drift evaluations per batch")
    if res["hutchinson_std_bpd"] == res["hutchinson_std_bpd"]:  # not nan
        print(f"  Hutchinson std of a one-probe estimate: {res['hutchinson_std_bpd']:.4f} bits/dim")
    label = {"test": "test NLL", "train": "train NLL"}.get(split, "NLL")
    print(f"{label} (ODE, dequantised: an upper bound): {res['bpd']:.2f} bits/dim (+/- {res['stderr']:.3f} s.e.)")
    print(f"run: {a.run}")
    return 0


def cmd_eval(a) -> int:
    from .data import load_dataset
    from .evaluate import evaluate
    from .runs import load_run

    cfg, model = load_run(a.run, a.device)
    split = _split(a.data, a.split)
    data = load_dataset(a.data or cfg.data, split, cfg.levels, cfg.labels or None, cfg.crop or None)
    if a.method == "ode":
        return _eval_ode(a, model, data, split)
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


def _sample_labels(cfg, a):
    """The classes to sample, as label indices (None: an unconditional run)."""
    import torch

    if not cfg.model.num_classes:
        if a.classes or a.guidance != 1.0:
            raise SystemExit(f"{a.run}: --class and --guidance need a run trained with --labels")
        return None
    names = cfg.classes or [str(i) for i in range(cfg.model.num_classes)]
    wanted = a.classes or names
    bad = [c for c in wanted if c not in names and not (c.isdigit() and int(c) < len(names))]
    if bad:
        raise SystemExit(f"unknown class(es) {bad}; this run has {names}")
    return torch.tensor([names.index(c) if c in names else int(c) for c in wanted])


def cmd_sample(a) -> int:
    import numpy as np
    import torch

    from .grids import Grid
    from .plots import save_grid
    from .runs import load_run

    cfg, model = load_run(a.run, a.device)
    grid = Grid.load(a.schedule) if a.schedule.endswith(".json") else a.schedule
    gen = torch.Generator().manual_seed(a.seed)
    sampler = a.sampler or ("momentum" if cfg.model.process == "blur" else "ancestral")
    cond, cols, n = _sample_labels(cfg, a), None, a.n
    if cond is not None:  # one row of n per class
        cond, cols = cond.repeat_interleave(a.n), a.n
        n = len(cond)
    x = model.sample(n, a.steps, cond=cond, guidance=a.guidance, generator=gen, progress=True, sampler=sampler,
                     grid=grid).cpu()
    print(f"samples: {save_grid(x, cfg.levels, a.out, cols=cols)}")
    if a.npz:
        a.npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(a.npz, x=x.numpy())
        print(f"arrays: {a.npz}")
    return 0


def cmd_schedule(a) -> int:
    import torch

    from .bound import data_to_signal
    from .data import load_dataset
    from .grids import FIXED, fixed_grid
    from .plots import plot_step_grid
    from .runs import load_run
    from .score_optimal import score_optimal

    cfg, model = load_run(a.run, a.device)
    blur = cfg.model.process == "blur"
    if blur and a.method not in ("wasserstein", "uniform-t"):
        raise ValueError(f"blur models take --method wasserstein or uniform-t, not {a.method!r}")
    if a.method == "wasserstein" and not blur:
        raise ValueError("--method wasserstein is for blur models (train with --process blur)")
    if a.method in ("score-optimal", "wasserstein"):
        data = load_dataset(a.data or cfg.data, _split(a.data, "train"), cfg.levels, crop=cfg.crop or None)
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
    p.add_argument("--grid", choices=("auto", "rate-optimal", "uniform-t"), default="auto",
                   help="where the T steps go: rate-optimal (chosen from the model's error on these inputs, kept "
                        "in the file), uniform in t, or auto: rate-optimal when it pays for its header bytes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("decompress", help="restore every item of a .dbits file, bit-exact")
    p.add_argument("file", type=Path)
    p.add_argument("--model", type=Path, required=True, help="the run that compressed it")
    p.add_argument("-o", "--out", type=Path, required=True, help="folder for the restored files")


def cmd_compress(a) -> int:
    from .codec import compress

    rep = compress(a.run, a.inputs, a.out, T=a.T, resolution=a.resolution, batch=a.batch, draws=a.draws,
                   progress=not a.json, grid=a.grid)
    if a.json:
        print(json.dumps(rep))
        return 0
    for r in rep["items"]:
        flag = "  (fallback: deflate)" if r["fallback"] else ""
        print(f"{r['name']}: {r['examples']} examples, {r['bpd']:.4f} bits/dim (net {r['net_bpd']:.4f}, "
              f"bound {r['bound_bpd']:.4f}){flag}")
    t = rep["total"]
    print(f"total: {t['bytes']} bytes, {t['bpd']:.4f} bits/dim (net of {t['initial_bits']} initial bits: "
          f"{t['net_bpd']:.4f}; bound at T={t['T']}, {t['grid']} steps: {t['bound_bpd']:.4f}) in {t['encode_s']:.1f} s -> {a.out}")
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


def _add_restore(sub):
    p = sub.add_parser("denoise", help="remove Gaussian noise of a known level with a trained model")
    p.add_argument("run", type=Path)
    p.add_argument("input", type=Path, help="noisy PNG (levels of the run), .npy or .npz (any numbers, in levels)")
    p.add_argument("--noise-sigma", type=float, required=True, help="std of the noise, in levels (0..K-1)")
    p.add_argument("-o", "--out", type=Path, required=True, help=".png, .npy or .npz (npz: x and the float mean)")
    p.add_argument("--samples", type=int, default=0,
                   help="posterior draws per input by the reverse chain (0: the posterior mean, one network call)")
    p.add_argument("--reference", type=Path, help="clean data (same layout): print the PSNR of noisy and denoised")
    p = sub.add_parser("inpaint", help="fill masked pixels consistently with the known ones (RePaint)")
    p.add_argument("run", type=Path)
    p.add_argument("input", type=Path, help="PNG (levels of the run), .npy or .npz of integer levels")
    p.add_argument("--mask", type=Path, required=True, help="PNG, .npy or .npz; non-zero pixels are filled")
    p.add_argument("-o", "--out", type=Path, required=True, help=".png (a grid when several), .npy or .npz")
    p.add_argument("--n", type=int, default=1, help="draws per input")
    p.add_argument("--resample", type=int, default=0, help="RePaint: redo each step R more times after a jump back")
    for name in ("denoise", "inpaint"):
        p = sub.choices[name]
        p.add_argument("--class", dest="classes", action="append", metavar="C",
                       help="conditional runs: the class of the inputs, name or index (once for all inputs, "
                            "or once per input; default: no label)")
        p.add_argument("--guidance", type=float, default=1.0,
                       help="classifier-free guidance w toward --class: eps_u + w (eps_c - eps_u)")
        p.add_argument("--sampler", default="ancestral", help="ancestral | ddim | heun | dpmpp2m")
        p.add_argument("--schedule", default="uniform-t",
                       help="uniform-t | uniform-logsnr | edm | cosine | GRID.json (from `diffbits schedule`)")
        p.add_argument("--steps", type=int, default=250, help="steps of the grid over the model's whole range")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="auto")


def _read_examples(path: Path, shape: tuple[int, ...], levels: int, exact: bool = True):
    """Every array of an image, .npy or .npz file, in order, as (n, *shape) examples: integer
    levels in [0, levels) (images always; arrays when ``exact``), else finite numbers (float64)."""
    import numpy as np

    from .codec.items import examples_of, read_item
    from .data import DataError

    meta, arrays = read_item(path)
    out = []
    for key, a in arrays.items():
        where = f"{path}[{key}]" if key else str(path)
        if exact or meta["kind"] == "image":
            out.append(examples_of(a, shape, levels, where)[0])
            continue
        if a.dtype.kind not in "iubf":
            raise DataError(f"{where}: dtype {a.dtype} is not a number type")
        idx, _ = examples_of(np.arange(a.size).reshape(a.shape), shape, max(a.size, 1), where)  # the layout alone
        x = a.reshape(-1)[idx].astype(np.float64)
        if not np.isfinite(x).all():
            raise DataError(f"{where}: contains NaN or infinite values")
        out.append(x)
    return np.concatenate(out)


def _read_mask(path: Path, shape: tuple[int, ...]):
    """A mask file as bool (m, *shape): an (H, W) image or array covers every channel; an RGB
    image marks a pixel when any of its channels is non-zero."""
    import numpy as np

    from .codec.items import examples_of, read_item
    from .data import DataError

    meta, arrays = read_item(path)
    if len(arrays) != 1:
        raise DataError(f"{path}: a mask file holds one array, this one {len(arrays)}")
    a = next(iter(arrays.values()))
    if a.dtype.kind not in "iubf":
        raise DataError(f"{path}: dtype {a.dtype} is not a number type")
    a = a != 0
    if meta["kind"] == "image" and a.ndim == 3:
        a = a.any(-1)
    if len(shape) == 3 and a.shape == shape[1:]:
        return np.broadcast_to(a, shape)[None].copy()
    return examples_of(a.astype(np.uint8), shape, 2, str(path))[0].astype(bool)


def _write_examples(path: Path, x, levels: int, **extra) -> Path:
    """Integer levels (n, *shape) to ``path`` by its suffix: .npy, .npz (key x and ``extra``) or
    .png (one 8-bit image exactly when levels is 256, else a display grid, ``plots.save_grid``)."""
    import numpy as np

    from .plots import save_grid

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".npy", ".npz"):
        raise ValueError(f"{path}: write .png, .npy or .npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    a = x.cpu().numpy()
    a = a.astype(np.uint8 if levels <= 256 else np.uint16 if levels <= 65536 else np.int64)
    if suffix == ".npy":
        np.save(path, a)
    elif suffix == ".npz":
        np.savez_compressed(path, x=a, **{k: v.cpu().numpy() for k, v in extra.items()})
    elif levels == 256 and len(a) == 1 and a.ndim == 4 and a.shape[1] in (1, 3):
        from PIL import Image

        Image.fromarray(a[0, 0] if a.shape[1] == 1 else a[0].transpose(1, 2, 0)).save(path)
    else:
        save_grid(x.cpu(), levels, path)
    return path


def _restore_grid(a):
    from .grids import Grid

    return Grid.load(a.schedule) if a.schedule.endswith(".json") else a.schedule


def _restore_labels(cfg, a, n: int):
    """The labels of ``n`` inputs to restore from ``--class`` (None: no label), one per input."""
    if not a.classes:
        if a.guidance != 1.0:
            raise SystemExit("--guidance needs --class (the class to guide toward)")
        return None
    labels = _sample_labels(cfg, a)
    if len(labels) not in (1, n):
        raise SystemExit(f"{len(labels)} --class values for {n} inputs (give one, or one per input)")
    return labels.expand(n)


def cmd_denoise(a) -> int:
    import torch

    from .denoise import noise_gamma, posterior_mean, posterior_samples, psnr
    from .runs import load_run

    if a.samples < 0:
        raise ValueError(f"--samples must be 0 (the posterior mean) or more, got {a.samples}")
    cfg, model = load_run(a.run, a.device)
    shape, k = tuple(cfg.shape), cfg.levels
    y = torch.from_numpy(_read_examples(a.input, shape, k, exact=False))
    ref = None if a.reference is None else torch.from_numpy(_read_examples(a.reference, shape, k))
    if ref is not None and ref.shape != y.shape:
        raise ValueError(f"{a.reference}: {len(ref)} examples for {len(y)} noisy ones")
    cond = _restore_labels(cfg, a, len(y))
    gamma = noise_gamma(model, a.noise_sigma)
    print(f"noise sigma {a.noise_sigma:g} levels of {k}: gamma = {gamma:.3f}")
    mean, rounded = (v.cpu() for v in posterior_mean(model, y, a.noise_sigma, cond, a.guidance))
    x, extra = rounded, {"mean": mean}
    if a.samples:
        gen = torch.Generator().manual_seed(a.seed)
        x = posterior_samples(model, y.repeat_interleave(a.samples, 0), a.noise_sigma, sampler=a.sampler,
                              grid=_restore_grid(a), steps=a.steps, generator=gen, progress=True,
                              cond=None if cond is None else cond.repeat_interleave(a.samples),
                              guidance=a.guidance).cpu()
        extra = {}
    if ref is not None:
        line = (f"PSNR: noisy {psnr(y, ref, k):.2f} dB, posterior mean {psnr(mean, ref, k):.2f} dB "
                f"(rounded {psnr(rounded, ref, k):.2f} dB)")
        if a.samples:
            line += f", samples {psnr(x, ref.repeat_interleave(a.samples, 0), k):.2f} dB"
        print(line)
    print(f"denoised: {_write_examples(a.out, x, k, **extra)}")
    return 0


def cmd_inpaint(a) -> int:
    import torch

    from .inpaint import inpaint
    from .runs import load_run

    if a.n < 1:
        raise ValueError(f"--n must be at least 1, got {a.n}")
    cfg, model = load_run(a.run, a.device)
    shape = tuple(cfg.shape)
    x = torch.from_numpy(_read_examples(a.input, shape, cfg.levels))
    mask = torch.from_numpy(_read_mask(a.mask, shape))
    if len(mask) not in (1, len(x)):
        raise ValueError(f"{a.mask}: {len(mask)} masks for {len(x)} examples (give one, or one per example)")
    cond = _restore_labels(cfg, a, len(x))
    print(f"{int(mask.sum())} of {mask[0].numel() * len(mask)} values to fill")
    x, mask = x.repeat_interleave(a.n, 0), mask.repeat_interleave(a.n, 0) if len(mask) > 1 else mask
    cond = None if cond is None else cond.repeat_interleave(a.n)
    gen = torch.Generator().manual_seed(a.seed)
    out = inpaint(model, x, mask, sampler=a.sampler, grid=_restore_grid(a), steps=a.steps, resample=a.resample,
                  generator=gen, progress=True, cond=cond, guidance=a.guidance)
    print(f"inpainted: {_write_examples(a.out, out, cfg.levels)}")
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
    _add_restore(sub)
    a = parser.parse_args(argv)
    from .data import DataError
    from .train import RunExists, TrainingDiverged

    try:
        return {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "schedule": cmd_schedule,
                "compress": cmd_compress, "decompress": cmd_decompress, "nets": cmd_nets,
                "denoise": cmd_denoise, "inpaint": cmd_inpaint}[a.cmd](a)
    except (DataError, RunExists, TrainingDiverged, FileNotFoundError, ValueError, TypeError) as e:
        print(f"diffbits {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffbits {a.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
