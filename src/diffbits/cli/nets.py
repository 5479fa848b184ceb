"""``diffbits nets``: the denoisers' parameters and FLOPs."""
from __future__ import annotations

import dataclasses

from .common import command, print_json


def add_parsers(sub) -> None:
    p = command(sub, "nets", run_nets, "parameters and FLOPs per forward pass of each denoiser")
    p.add_argument("--size", type=int, default=32, help="image side (square images)")
    p.add_argument("--channels", type=int, default=3, help="image channels")
    p.add_argument("--width", type=int, help="base width shared by the networks (default: the config's)")
    p.add_argument("--levels", type=int, default=256, help="data levels (for the Fourier features)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run_nets(a) -> int:
    from ..build import build_denoiser
    from ..config import ModelConfig
    from ..nets import cost

    if a.size < 1 or a.channels < 1:
        raise ValueError("--size and --channels must be positive")
    base = ModelConfig() if a.width is None else ModelConfig(width=a.width)
    shape = (a.channels, a.size, a.size)
    out = {name: cost(build_denoiser(dataclasses.replace(base, net=net), shape, a.levels), shape)
           for name, net in (("ScoreUNet", "score_unet"), ("UNet", "unet"), ("ContinuousUNet", "continuous_unet"))}
    if a.json:
        print_json(out)
        return 0
    ref = out["UNet"]
    print(f"{a.channels}x{a.size}x{a.size}, base width {base.width}")
    print(f"{'network':<16}{'params':>12}{'GFLOPs':>10}{'params/UNet':>13}{'FLOPs/UNet':>12}")
    for name, c in out.items():
        print(f"{name:<16}{c['params']:>12,}{c['flops'] / 1e9:>10.3f}{c['params'] / ref['params']:>13.3f}"
              f"{c['flops'] / ref['flops']:>12.3f}")
    return 0
