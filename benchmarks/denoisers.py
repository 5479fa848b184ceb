"""Denoiser benchmark: ScoreUNet, the DDPM UNet and the ContinuousUNet (docs/networks.md section 5) at one base width.

On ``digits`` and ``mnist10k`` each network trains the same VDM for the same wall clock (the
dataset's config, ``model.net`` and ``model.width`` overridden); then parameters, FLOPs per
forward pass, training throughput, latency of 50 sampling steps, the test bound, and the PSNR of
one network call (the denoised ``x_hat``) at several noise levels. At CIFAR-10 size (3x32x32,
random data) cost only: parameters, FLOPs, training throughput and sampling latency. Appends the
tables to ``benchmarks/RESULTS.md``.

    python benchmarks/denoisers.py [--datasets digits,mnist] [--minutes 3] [--width 32]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from likelihood import bound, datasets, run_ours  # noqa: E402
from report import append_results, header  # noqa: E402

from diffbits.bound import data_to_signal  # noqa: E402
from diffbits.build import build_model  # noqa: E402
from diffbits.config import ModelConfig  # noqa: E402
from diffbits.data import load_dataset  # noqa: E402
from diffbits.nets import cost  # noqa: E402
from diffbits.schedules import alpha_sigma  # noqa: E402

NETS = {"ScoreUNet": "score_unet", "UNet": "unet", "ContinuousUNet": "continuous_unet"}
NOISE = (0.1, 0.2, 0.5, 1.0)  # noise std relative to the data range [-1, 1]
CACHE = HERE / ".cache" / "denoisers"


@torch.no_grad()
def latency(model, n: int = 16, steps: int = 50) -> float:
    """Seconds for ``steps`` ancestral steps on ``n`` examples (one warm-up step first)."""
    model.sample(n, 1, generator=torch.Generator().manual_seed(0))
    tic = time.perf_counter()
    model.sample(n, steps, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - tic


@torch.no_grad()
def psnr(model, x: torch.Tensor, noise: float, seed: int = 0) -> float:
    """PSNR (peak-to-peak 2) of ``x_hat = (z - sigma eps_hat) / alpha`` from ``z = alpha (f + noise eta)``."""
    f = data_to_signal(x, model.levels, torch.float32)
    gamma = torch.tensor(2 * math.log(noise))  # sigma / alpha = exp(gamma / 2)
    alpha, sigma = alpha_sigma(gamma)
    z = alpha * f + sigma * torch.randn(f.shape, generator=torch.Generator().manual_seed(seed))
    x_hat = ((z - sigma * model.eps_hat(z, gamma.expand(len(z)))) / alpha).clamp(-1, 1)
    return float(10 * torch.log10(4 / (x_hat - f).square().mean()))


def train_throughput(model, shape, levels: int, batch: int = 16, steps: int = 5) -> float:
    """Optimiser steps on random data: examples per second (after two warm-up steps)."""
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.randint(0, levels, (batch,) + tuple(shape), generator=torch.Generator().manual_seed(0))
    for i in range(steps + 2):
        if i == 2:
            tic = time.perf_counter()
        opt.zero_grad()
        model.loss_terms(x).bpd.mean().backward()
        opt.step()
    return batch * steps / (time.perf_counter() - tic)


def dataset_table(name: str, minutes: float, width: int, mnist: str) -> str:
    train_spec, test_spec, split, desc = datasets(mnist)[name]
    test = load_dataset(test_spec, split)
    rows = [f"**{name}** ({desc}; {minutes} min of training each, base width {width})", "",
            "| network | params | MFLOPs / forward | train examples/s | steps | 50-step sampling, 16 images (s) "
            "| test bound (bits/dim) | " + " | ".join(f"PSNR @ noise {s}" for s in NOISE) + " |",
            "|---|---|---|---|---|---|---|" + "---|" * len(NOISE)]
    bounds = {}
    for label, net in NETS.items():
        print(f"[{name}] {label}: training {minutes} min", flush=True)
        model, _, s = run_ours(train_spec, HERE.parent / "configs" / f"{name}.json",
                               [f"model.net={net}", f"model.width={width}", "model.attention=true"], minutes,
                               CACHE / f"{name}-{net}")
        c = cost(model.denoiser, test.shape)
        b = bound(model, test, samples=4)
        bounds[label] = b["bpd"]
        p = [psnr(model, test.x[:256], s) for s in NOISE]
        rows.append(f"| {label} | {c['params']:,} | {c['flops'] / 1e6:.1f} | {s['examples_per_s']:.1f} | {s['steps']} "
                    f"| {latency(model):.2f} | {b['bpd']:.4f} | " + " | ".join(f"{v:.2f}" for v in p) + " |")
        print(rows[-1], flush=True)
    rows += ["", f"- ContinuousUNet ÷ UNet test bound: {bounds['ContinuousUNet'] / bounds['UNet']:.4f}; "
                 f"÷ ScoreUNet: {bounds['ContinuousUNet'] / bounds['ScoreUNet']:.4f}"]
    return "\n".join(rows)


def cifar_table(width: int) -> str:
    shape, levels = (3, 32, 32), 256
    rows = [f"**CIFAR-10 size** (3x32x32, random data, cost only; base width {width})", "",
            "| network | params | GFLOPs / forward | ÷ UNet params | ÷ UNet FLOPs | train examples/s (batch 16) "
            "| 50-step sampling, 16 images (s) |", "|---|---|---|---|---|---|---|"]
    costs = {}
    for label, net in NETS.items():
        torch.manual_seed(0)
        model = build_model(ModelConfig(net=net, width=width), shape, levels)
        costs[label] = c = cost(model.denoiser, shape)
        thr, lat = train_throughput(model, shape, levels), latency(model)
        costs[label].update(thr=thr, lat=lat)
        print(label, c, flush=True)
    ref = costs["UNet"]
    for label, c in costs.items():
        rows.append(f"| {label} | {c['params']:,} | {c['flops'] / 1e9:.3f} | {c['params'] / ref['params']:.3f} "
                    f"| {c['flops'] / ref['flops']:.3f} | {c['thr']:.1f} | {c['lat']:.2f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,mnist", help="comma-separated; empty: CIFAR-size cost only")
    ap.add_argument("--minutes", type=float, default=3.0, help="training wall clock per network")
    ap.add_argument("--width", type=int, default=32, help="base width shared by the three networks")
    ap.add_argument("--cifar-width", type=int, default=64, help="base width at CIFAR-10 size")
    ap.add_argument("--mnist", default="/work/shared/data/mnist10k.npz")
    a = ap.parse_args(argv)
    tables = [cifar_table(a.cifar_width)]
    print(tables[-1], flush=True)
    for name in filter(None, a.datasets.split(",")):
        tables.append(dataset_table(name, a.minutes, a.width, a.mnist))
        print(tables[-1], flush=True)
    append_results("Denoisers: ScoreUNet, DDPM UNet, ContinuousUNet (benchmarks/denoisers.py)", header(),
                   "\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
