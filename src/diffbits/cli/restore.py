"""``diffbits denoise`` and ``diffbits inpaint``: restore the user's files, written back in their own format."""
from __future__ import annotations

from pathlib import Path

from .common import add_device, add_grid, add_seed, class_labels, command, grid_name

FORMAT = ("The output is written in the input's format: a PNG gives a PNG of the same size and levels,\n"
          "an array the same dtype and shape (with a leading draw axis when there are several draws,\n"
          "or FILE_0.png, FILE_1.png, ... for images). --preview writes a picture grid to look at.")


def add_parsers(sub) -> None:
    p = command(sub, "denoise", run_denoise, "remove Gaussian noise of a known level with a trained model",
                "Restore an input read as clean data plus Gaussian noise of std --noise-sigma (in levels).\n" + FORMAT)
    p.add_argument("run", type=Path, help="a run directory")
    p.add_argument("input", type=Path, help="noisy PNG (levels of the run), .npy or .npz (any numbers, in levels)")
    p.add_argument("--noise-sigma", type=float, required=True, help="std of the noise, in levels (0..K-1)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the restored file, in the input's format")
    p.add_argument("--samples", type=int, default=0,
                   help="posterior draws per input by the reverse chain (0: the rounded posterior mean, one call)")
    p.add_argument("--reference", type=Path, help="clean data (same layout): print the PSNR of noisy and denoised")
    p = command(sub, "inpaint", run_inpaint, "fill masked pixels consistently with the known ones (RePaint)",
                "Fill the pixels where --mask is non-zero with a draw from the model given the others;\n"
                "known pixels are kept exactly. " + FORMAT)
    p.add_argument("run", type=Path, help="a run directory")
    p.add_argument("input", type=Path, help="PNG (levels of the run), .npy or .npz of integer levels")
    p.add_argument("--mask", type=Path, required=True, help="PNG, .npy or .npz; non-zero pixels are filled")
    p.add_argument("-o", "--out", type=Path, required=True, help="the filled file, in the input's format")
    p.add_argument("--n", type=int, default=1, help="draws per input")
    p.add_argument("--resample", type=int, default=0,
                   help="RePaint: redo each step R more times after a jump back (multistep samplers then restart)")
    for name in ("denoise", "inpaint"):
        p = sub.choices[name]
        p.add_argument("--preview", type=Path, help="FILE.png: a grid of the outputs to look at")
        p.add_argument("--class", dest="classes", action="append", metavar="C",
                       help="conditional runs: the class of the inputs, name or index (once for all inputs, "
                            "or once per input; default: no label)")
        p.add_argument("--guidance", type=float, default=1.0,
                       help="classifier-free guidance w toward --class: eps_u + w (eps_c - eps_u)")
        add_grid(p, steps=250)
        add_seed(p)
        add_device(p)


def _labels(cfg, a, n: int):
    """The labels of ``n`` inputs from ``--class`` (None: no label), one per input."""
    if not a.classes:
        if a.guidance != 1.0:
            raise ValueError("--guidance needs --class (the class to guide toward)")
        return None
    labels = class_labels(cfg, a.classes, a.guidance, a.run)
    if len(labels) not in (1, n):
        raise ValueError(f"{len(labels)} --class values for {n} inputs (give one, or one per input)")
    return labels.expand(n)


def _write(a, meta, x, cfg, draws: int) -> None:
    from ..io import write_like
    from ..plots import save_grid

    paths = write_like(meta, x.numpy(), a.out, draws)
    print(f"{a.cmd}d: {paths[0]}" + (f" ... {paths[-1].name} ({len(paths)} files)" if len(paths) > 1 else ""))
    if a.preview is not None:
        print(f"preview: {save_grid(x, cfg.levels, a.preview)}")


def run_denoise(a) -> int:
    import torch

    from ..denoise import noise_gamma, posterior_mean, posterior_samples, psnr
    from ..io import check_output, read_examples
    from ..runs import load_run, run_grid

    if a.samples < 0:
        raise ValueError(f"--samples must be 0 (the posterior mean) or more, got {a.samples}")
    cfg, model = load_run(a.run, a.device)
    shape, k = tuple(cfg.shape), cfg.levels
    y, meta = read_examples(a.input, shape, k, exact=False)
    check_output(meta, a.out)
    y = torch.from_numpy(y)
    ref = None if a.reference is None else torch.from_numpy(read_examples(a.reference, shape, k)[0])
    if ref is not None and ref.shape != y.shape:
        raise ValueError(f"{a.reference}: {len(ref)} examples for {len(y)} noisy ones")
    cond = _labels(cfg, a, len(y))
    gamma = noise_gamma(model, a.noise_sigma)
    print(f"noise sigma {a.noise_sigma:g} levels of {k}: gamma = {gamma:.3f}")
    mean, x = (v.cpu() for v in posterior_mean(model, y, a.noise_sigma, cond, a.guidance))
    line = "" if ref is None else (f"PSNR: noisy {psnr(y, ref, k):.2f} dB, posterior mean {psnr(mean, ref, k):.2f} dB "
                                   f"(rounded {psnr(x, ref, k):.2f} dB)")
    draws = max(1, a.samples)
    if a.samples:  # draw-major: every input once per draw
        gen = torch.Generator().manual_seed(a.seed)
        grid = run_grid(a.run, cfg, model, grid_name(a), a.steps, progress=True, sampler=a.sampler)
        x = posterior_samples(model, y.repeat(a.samples, *[1] * (y.dim() - 1)), a.noise_sigma, sampler=a.sampler or "ancestral",
                              grid=grid, generator=gen, progress=True,
                              cond=None if cond is None else cond.repeat(a.samples), guidance=a.guidance).cpu()
        if ref is not None:
            line += f", samples {psnr(x, ref.repeat(a.samples, *[1] * (ref.dim() - 1)), k):.2f} dB"
    if line:
        print(line)
    _write(a, meta, x, cfg, draws)
    return 0


def run_inpaint(a) -> int:
    import torch

    from ..inpaint import inpaint
    from ..io import check_output, read_examples, read_mask
    from ..runs import load_run, run_grid

    if a.n < 1:
        raise ValueError(f"--n must be at least 1, got {a.n}")
    cfg, model = load_run(a.run, a.device)
    shape = tuple(cfg.shape)
    x, meta = read_examples(a.input, shape, cfg.levels)
    check_output(meta, a.out)
    x, mask = torch.from_numpy(x), torch.from_numpy(read_mask(a.mask, shape))
    if len(mask) not in (1, len(x)):
        raise ValueError(f"{a.mask}: {len(mask)} masks for {len(x)} examples (give one, or one per example)")
    cond = _labels(cfg, a, len(x))
    print(f"{int(mask.sum())} of {mask[0].numel() * len(mask)} values to fill")
    rep = (a.n, *[1] * (x.dim() - 1))  # draw-major: every input once per draw
    x, mask = x.repeat(rep), mask.repeat(rep) if len(mask) > 1 else mask
    cond = None if cond is None else cond.repeat(a.n)
    grid = run_grid(a.run, cfg, model, grid_name(a), a.steps, progress=True, sampler=a.sampler)
    gen = torch.Generator().manual_seed(a.seed)
    out = inpaint(model, x, mask, sampler=a.sampler or "ancestral", grid=grid, resample=a.resample, generator=gen,
                  progress=True, cond=cond, guidance=a.guidance)
    _write(a, meta, out, cfg, a.n)
    return 0
