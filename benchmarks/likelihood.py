"""Likelihood benchmark: our VDM against a peer diffusion model and lossless codecs.

For each dataset, on the same training images and the same wall-clock budget:
- ours: a diffbits VDM (``--ours-set`` overrides its config), EMA weights;
- the peer: lucidrains' ``denoising-diffusion-pytorch`` (``ContinuousTimeGaussianDiffusion``
  with its learned schedule and its ``Unet``, width chosen to match our parameter count),
  trained as its own Trainer does, EMA weights; its network and schedule are wrapped as a
  diffbits denoiser and schedule (``benchmarks/peers/lucidrains.py``) so that its test
  bound is computed by the same code as ours, on the same (t, noise) draws;
- PNG, WebP-lossless and JPEG-XL-lossless on the same test images (the same integers:
  digits stay 0..16 in uint8), per image and as one mosaic.
Prints a markdown table and appends it to ``benchmarks/RESULTS.md`` (not with ``--quick``).

    python benchmarks/likelihood.py --minutes 3
    python benchmarks/likelihood.py --quick          # ~10 s per model, a smoke run
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import lucidrains  # noqa: E402

from diffbits import __version__ as diffbits_version  # noqa: E402
from diffbits.config import RunConfig, apply_overrides  # noqa: E402
from diffbits.data import Dataset, load_dataset  # noqa: E402
from diffbits.evaluate import evaluate  # noqa: E402
from diffbits.train import Trainer  # noqa: E402

MNIST = "/work/shared/data/mnist10k.npz"
CONFIGS = HERE.parent / "configs"  # ours: configs/<dataset>.json, then --ours-set
QUICK_SECONDS, QUICK_TEST = 10, 128  # --quick: seconds per model, test images


def datasets(mnist: str) -> dict:
    """name -> (train spec, test spec, test split, description)."""
    return {
        "digits": ("digits", "digits", "test", "scikit-learn digits, 8x8, 17 levels, 1500 train / 297 test"),
        "mnist": (f"{mnist}[:9000]", f"{mnist}[9000:]", "all", "MNIST (10k file), 28x28, 256 levels, 9000 train / 1000 test"),
    }


# -- the two models ---------------------------------------------------------------------------

def run_ours(train_spec: str, config: Path, overrides: list[str], minutes: float, run_dir: Path) -> tuple:
    """Train our VDM for ``minutes``; returns (EMA model, online model, summary)."""
    cfg = apply_overrides(RunConfig.load(config), overrides)
    cfg.data, cfg.train.minutes, cfg.train.steps = train_spec, minutes, 0
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    trainer = Trainer.create(cfg, run_dir)
    cfg.save(run_dir / "config.json")
    tic = time.perf_counter()
    trainer.fit(progress=False)
    seconds = time.perf_counter() - tic
    model = trainer.ema.module.eval()
    return model, trainer.model.eval(), {
        "params": sum(p.numel() for p in model.denoiser.parameters()),
        "steps": trainer.step,
        "examples_per_s": trainer.step * cfg.train.batch_size / seconds,
        "batch_size": cfg.train.batch_size,
        "lr": cfg.train.lr,
        "ema_decay": cfg.train.ema_decay,
    }


def run_peer(train: Dataset, target_params: int, minutes: float, batch_size: int, lr: float, device) -> tuple:
    """Train the peer for ``minutes`` with about ``target_params`` denoiser parameters;
    returns (its EMA and online models as diffbits VDMs, summary)."""
    dim = lucidrains.match_dim(train.shape, target_params)
    torch.manual_seed(0)
    diffusion = lucidrains.build(train.shape, dim).to(device)
    ema, summary = lucidrains.train(diffusion, train.x, train.levels, minutes, batch_size, lr)
    model = lucidrains.as_vdm(ema, train.levels, train.shape)
    summary.update(params=lucidrains.count_params(model.denoiser), dim=dim, batch_size=batch_size, lr=lr)
    return model, lucidrains.as_vdm(diffusion, train.levels, train.shape), summary


def bound(model, test: Dataset, samples: int) -> dict:
    r = evaluate(model, test, samples=samples, seed=0, progress=False)  # same seed: same draws
    with torch.no_grad():
        g0, g1 = model.schedule.gamma_0.item(), model.schedule.gamma_1.item()
    return {**r, "gammas": f"{g0:.2f} / {g1:.2f}"}


# -- codecs -----------------------------------------------------------------------------------

def codecs() -> dict:
    """name -> (encode, decode) of 2-D uint8 gray images, at their strongest settings."""
    import imagecodecs as ic

    def rgb(a):  # WebP has no gray mode: three equal channels
        return np.repeat(a[..., None], 3, -1)

    return {
        "PNG": (lambda a: ic.png_encode(a, level=9), ic.png_decode),
        "WebP lossless": (lambda a: ic.webp_encode(rgb(a), level=100, lossless=True, method=6),
                          lambda b: ic.webp_decode(b)[..., 0]),
        "JPEG-XL lossless": (lambda a: ic.jpegxl_encode(a, lossless=True, effort=10), ic.jpegxl_decode),
    }


def mosaic(images: np.ndarray) -> np.ndarray:
    """All images tiled on a near-square grid; empty cells are zero (background)."""
    n, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * cols, h, w), np.uint8)
    grid[:n] = images
    return grid.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def checked_codec_rows(coders: dict, ways: dict[str, list[np.ndarray]], values: int) -> list[dict]:
    """Bits per value of each codec of ``coders`` (name: (encode, decode)) on each way of
    presenting the data (``ways``: label: arrays), over ``values``; every code is decoded and checked."""
    rows = []
    for name, (encode, decode) in coders.items():
        for how, arrays in ways.items():
            bits = 0
            for a in arrays:
                code = encode(a)
                if not np.array_equal(np.asarray(decode(code)).reshape(a.shape), a):
                    raise RuntimeError(f"{name} did not round-trip")
                bits += 8 * len(code)
            rows.append({"method": f"{name}, {how}", "bpd": bits / values})
    return rows


def codec_rows(test: Dataset) -> list[dict]:
    """Bits/dim of each codec on the test images, per image and as one mosaic
    (always divided by the test set's own pixel count)."""
    images = test.x[:, 0].numpy().astype(np.uint8)  # the same integers the models see
    return checked_codec_rows(codecs(), {"per image": list(images), "mosaic": [mosaic(images)]}, images.size)


# -- report -----------------------------------------------------------------------------------

def table(name: str, desc: str, ours: dict, peer: dict, online: dict, codec: list[dict]) -> str:
    head = ("| method | denoiser params | train steps | train examples/s | test bits/dim | ± s.e. "
            "| prior | recon | diffusion | gamma_0 / gamma_1 | ours ÷ this |")
    lines = [f"**{name}**: {desc}", "", head, "|" + "---|" * (head.count("|") - 1)]
    model_rows = [("ours (diffbits VDM)", ours), (f"peer (lucidrains, Unet dim {peer['dim']})", peer), *online.items()]
    for label, r in model_rows:
        lines.append(
            f"| {label} | {r['params']:,} | {r['steps']} | {r['examples_per_s']:.0f} | {r['bpd']:.3f} "
            f"| {r['stderr']:.3f} | {r['prior_bpd']:.4f} | {r['recon_bpd']:.4f} | {r['diffusion_bpd']:.3f} "
            f"| {r['gammas']} | {ours['bpd'] / r['bpd']:.3f} |")
    for r in codec:
        lines.append(f"| {r['method']} | | | | {r['bpd']:.3f} | | | | | | {ours['bpd'] / r['bpd']:.3f} |")
    lines += ["", f"ours ÷ peer: bits/dim {ours['bpd'] / peer['bpd']:.3f}, training throughput "
              f"{ours['examples_per_s'] / peer['examples_per_s']:.2f}, parameters {ours['params'] / peer['params']:.2f}.", ""]
    return "\n".join(lines)


def header(args, settings: str) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return "\n".join([
        f"## Likelihood benchmark, {now}",
        "",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), diffbits {diffbits_version}",
        f"- command: `{shlex.join(sys.orig_argv)}` at diffbits commit {git_commit()}",
        f"- {settings}",
        "- test bits/dim of both models: the continuous-time bound computed by `diffbits.VDM.bound` "
        f"with {args.samples} Monte Carlo draws per test image (the same draws for both), EMA weights unless marked online; "
        "s.e. over test images. Codecs: bits of all codes ÷ test pixels; they see the same integers "
        "(digits: values 0..16 stored as uint8); WebP gets the gray image as three equal channels; "
        "mosaic = all test images on one near-square grid, empty cells zero. 'ours ÷ this' < 1: ours is smaller.",
        "",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="digits,mnist", help="comma-separated: digits, mnist")
    p.add_argument("--minutes", type=float, default=3.0, help="wall-clock training budget per model")
    p.add_argument("--samples", type=int, default=4, help="Monte Carlo draws per test image")
    p.add_argument("--out", type=Path, default=HERE / ".cache" / "likelihood", help="work directory")
    p.add_argument("--ours-set", action="append", default=None, metavar="KEY=VALUE",
                   help="override our config, configs/<dataset>.json (repeatable)")
    p.add_argument("--peer-lr", type=float, default=2e-3, help="the peer's Adam learning rate (default: ours)")
    p.add_argument("--peer-batch", type=int, help="the peer's batch size (default: ours)")
    p.add_argument("--mnist", default=MNIST, help="the MNIST npz (key data)")
    p.add_argument("--online", action="store_true", help="also evaluate both models' raw (non-EMA) weights")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_SECONDS} s per model, {QUICK_TEST} test images; nothing appended")
    args = p.parse_args(argv)

    try:  # optional dependencies, checked before any training
        import imagecodecs  # noqa: F401
    except ImportError:
        print("likelihood.py: imagecodecs is not installed; install with: pip install imagecodecs", file=sys.stderr)
        return 2
    try:
        lucidrains.load_peer()
    except lucidrains.MissingPeer as e:
        print(f"likelihood.py: {e}", file=sys.stderr)
        return 2

    if busy_cpu():
        print("likelihood.py: warning: other processes are using the CPU; training budgets and "
              "throughput will not be comparable with other runs", file=sys.stderr)
    overrides = args.ours_set or []
    minutes = QUICK_SECONDS / 60 if args.quick else args.minutes
    known = datasets(args.mnist)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad:
        p.error(f"unknown dataset(s) {bad}; choose from {sorted(known)}")

    sections, settings = [], None
    for name in names:
        train_spec, test_spec, test_split, desc = known[name]
        train = load_dataset(train_spec, "train")
        test = load_dataset(test_spec, test_split)
        if args.quick:
            test = Dataset(test.x[:QUICK_TEST], test.levels, test.name + f"[:{QUICK_TEST}]")
            desc += f" (quick: first {QUICK_TEST} test images)"
        config = CONFIGS / f"{name}.json"
        print(f"[{name}] training ours for {minutes:.2f} min ({config.name} {' '.join(overrides)})", flush=True)
        ours_model, ours_online, ours = run_ours(train_spec, config, overrides, minutes, args.out / name / "ours")
        ours.update(bound(ours_model, test, args.samples))
        print(f"[{name}] ours: {ours['steps']} steps, {ours['bpd']:.3f} bits/dim", flush=True)
        batch = args.peer_batch or ours["batch_size"]
        print(f"[{name}] training the peer for {minutes:.2f} min", flush=True)
        device = ours_model.schedule.gamma_0.device  # the peer trains where ours did
        peer_model, peer_online, peer = run_peer(train, ours["params"], minutes, batch, args.peer_lr, device)
        peer.update(bound(peer_model, test, args.samples))
        online = {}
        if args.online:
            online = {"ours, online weights": {**ours, **bound(ours_online, test, args.samples)},
                      "peer, online weights": {**peer, **bound(peer_online, test, args.samples)}}
        print(f"[{name}] peer: {peer['steps']} steps, {peer['bpd']:.3f} bits/dim", flush=True)
        print(f"[{name}] codecs", flush=True)
        sections.append(table(name, desc, ours, peer, online, codec_rows(test)))
        settings = (f"budget {minutes:g} min per model; ours: configs/{name}.json {' '.join(overrides)}, batch {ours['batch_size']}, "
                    f"AdamW lr {ours['lr']:g}, EMA {ours['ema_decay']:g} with warm-up (our defaults otherwise); peer: "
                    f"denoising-diffusion-pytorch {peer_version()}, Unet dim_mults (1, 2), learned_sinusoidal_cond, "
                    f"noise_schedule 'learned', batch {peer['batch_size']}, Adam lr {peer['lr']:g} betas (0.9, 0.99), "
                    f"grad-norm clip 1, EMA 0.995 every 10 steps (its Trainer's defaults)")

    report = header(args, settings) + "\n" + "\n".join(sections)
    print("\n" + report)
    if args.quick:
        print("(--quick: not appended to RESULTS.md)")
    else:
        with (HERE / "RESULTS.md").open("a") as fh:
            fh.write(report + "\n")
        print(f"appended to {HERE / 'RESULTS.md'}")
    return 0


def busy_cpu(probes: int = 10) -> bool:
    """Whether other tasks are runnable (Linux ``/proc/loadavg``), probed for half a second."""
    try:
        for _ in range(probes):
            with open("/proc/loadavg") as fh:
                if int(fh.read().split()[3].split("/")[0]) > 1:  # one is this process
                    return True
            time.sleep(0.5 / probes)
    except (OSError, ValueError, IndexError):
        pass
    return False


def git_commit() -> str:
    """The repository's commit, ``-dirty`` when the work tree has changes."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def peer_version() -> str:
    from importlib.metadata import version

    return version("denoising-diffusion-pytorch")


if __name__ == "__main__":
    sys.exit(main())
