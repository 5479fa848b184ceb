"""The recipe's device profile: how long a training step takes, against the FLOPs it does.

The recipe (``diffbits.recipe``) predicts a step's time as ``overhead + batch * (3 * flops /
flops_per_s + 3 * activations / values_per_s)`` (forward and backward: arithmetic, and the values
memory-bound layers write) to choose a network whose steps fit the budget. This script times real
training steps (``Trainer.train_step``: the bound, backward, AdamW, EMA) of candidate networks on
several data shapes, fits the three constants by least squares on relative error, and prints the
fit beside the profile the recipe uses, with each configuration's prediction.

    python benchmarks/device_profile.py [--steps 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import append_results, header  # noqa: E402

from diffbits.build import build_denoiser  # noqa: E402
from diffbits.config import RunConfig  # noqa: E402
from diffbits.data import Dataset  # noqa: E402
from diffbits.nets import cost  # noqa: E402
from diffbits.recipe import LADDER, head_activations, predicted_step_seconds, profile_of  # noqa: E402
from diffbits.train import Trainer  # noqa: E402

# (name, example shape, levels, net, channel_mult, batch, head)
CASES = [
    ("8x8 gray", (1, 8, 8), 17, "score_unet", None, 128, "categorical"),
    ("8x8 gray", (1, 8, 8), 17, "score_unet", None, 128, "eps"),
    ("28x28 gray", (1, 28, 28), 256, "unet", [1, 2, 2], 32, "eps"),
    ("28x28 gray", (1, 28, 28), 256, "unet", [1, 2, 2], 8, "eps"),
    ("28x28 gray", (1, 28, 28), 256, "score_unet", None, 32, "eps"),
    ("16x16 RGB", (3, 16, 16), 256, "unet", [1, 2, 2], 32, "eps"),
    ("1024 samples", (1, 1024), 65536, "unet", [1, 2, 2, 2, 4], 16, "eps"),
    ("64-vector", (64,), 256, "mlp", None, 128, "eps"),
]
RUNGS = [LADDER[i] for i in (0, 2, 3, 5)]  # small to large


def time_steps(case, width: int, depth: int, steps: int, tmp: Path) -> tuple[float, dict]:
    """(median seconds per step, ``nets.cost`` of the network) for one configuration."""
    name, shape, levels, net, mult, batch, head = case
    cfg = RunConfig()
    m, t = cfg.model, cfg.train
    m.net, m.width, m.depth, m.res_blocks, m.channel_mult, m.head = net, width, depth, depth, mult, head
    t.batch_size, t.steps = batch, steps
    data = Dataset(torch.randint(0, levels, (max(256, batch), *shape)), levels, name)
    trainer = Trainer.create(cfg, tmp, data=data)
    times = []
    for _ in range(steps + 2):
        tic = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - tic)
    c = cost(build_denoiser(m, shape, levels, levels if head == "categorical" else 0), shape)
    if head == "categorical":
        c["activations"] += head_activations(shape, levels)
    return float(np.median(times[2:])), c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per configuration (after 2 untimed)")
    ap.add_argument("--no-append", action="store_true", help="print only")
    a = ap.parse_args()
    torch.manual_seed(0)
    tmp = HERE / ".cache" / "device_profile"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in CASES:
        for width, depth in RUNGS:
            seconds, c = time_steps(case, width, depth, a.steps, tmp)
            rows.append((case, width, depth, seconds, c))
            print(f"{case[0]:<13} {case[3]:<11} {case[6]:<11} batch {case[5]:>3} w{width} d{depth}: "
                  f"{seconds * 1e3:7.1f} ms, {c['flops'] / 1e6:8.1f} MFLOP, {c['activations'] / 1e6:6.2f} M values "
                  f"per example", flush=True)
    flops = np.array([3.0 * r[4]["flops"] * r[0][5] for r in rows])  # per step, forward and backward
    values = np.array([3.0 * r[4]["activations"] * r[0][5] for r in rows])
    secs = np.array([r[3] for r in rows])
    # least squares on relative error: seconds ~ overhead + flops / flop_rate + values / value_rate
    A = np.stack([np.ones_like(secs), flops, values], 1) / secs[:, None]
    (overhead, inv_flops, inv_values), *_ = np.linalg.lstsq(A, np.ones_like(secs), rcond=None)
    used = profile_of("cpu", torch.get_num_threads())
    lines = ["| data | net | head | batch | width, depth | step ms | predicted (fit) | predicted (recipe) |",
             "|---|---|---|---|---|---|---|---|"]
    for (case, width, depth, seconds, c) in rows:
        fit = overhead + 3 * case[5] * (c["flops"] * inv_flops + c["activations"] * inv_values)
        rec = predicted_step_seconds(c["flops"], c["activations"], case[5], used)
        lines.append(f"| {case[0]} | {case[3]} | {case[6]} | {case[5]} | {width}, {depth} | {seconds * 1e3:.1f} | "
                     f"{fit * 1e3:.1f} | {rec * 1e3:.1f} |")
    lines += ["", f"fit ({torch.get_num_threads()} threads): overhead {overhead * 1e3:.1f} ms per step, "
              f"{1 / inv_flops / 1e9:.1f} GFLOP/s, {1 / inv_values / 1e9:.2f} G values/s; the recipe's profile: "
              f"{used.step_overhead_s * 1e3:.1f} ms, {used.flops_per_s / 1e9:.1f} GFLOP/s, "
              f"{used.values_per_s / 1e9:.2f} G values/s"]
    text = "\n".join(lines)
    print(text)
    if not a.no_append:
        append_results("Device profile of the recipe (benchmarks/device_profile.py)", header(), text)


if __name__ == "__main__":
    main()
