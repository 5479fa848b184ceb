"""Denoising PSNR against the noise level: our posterior mean beside non-local means.

On the digits test split (297 images, 17 levels) and the last 1000 MNIST digits (256 levels),
Gaussian noise of std ``sigma`` (in levels) is added; we report the PSNR (peak K - 1) of the
noisy input, of our one-call posterior mean (``diffbits.denoise.posterior_mean``, the trained
likelihood benchmark runs) and of scikit-image's non-local means told the true sigma (its
``h = 0.8 sigma``, patch 3, distance 5 on 8x8, 5 and 6 on 28x28; rounded the same way).

    python benchmarks/denoising.py [--datasets digits,mnist]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from likelihood import MNIST, datasets  # noqa: E402
from report import append_results, header  # noqa: E402

from diffbits.data import load_dataset  # noqa: E402
from diffbits.denoise import add_noise, posterior_mean, psnr  # noqa: E402
from diffbits.runs import load_run  # noqa: E402

SIGMAS = {"digits": (0.5, 1, 2, 4), "mnist": (8, 16, 32, 64)}


def nlm(y: np.ndarray, sigma: float, levels: int) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    patch, dist = (3, 5) if y.shape[-1] <= 8 else (5, 6)
    scale = levels - 1
    out = [denoise_nl_means(im[0] / scale, h=0.8 * sigma / scale, sigma=sigma / scale, patch_size=patch,
                            patch_distance=dist, fast_mode=True) * scale for im in y]
    return np.clip(np.round(np.stack(out)[:, None]), 0, levels - 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,mnist")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    rows = ["| data | sigma (levels) | noisy | ours: posterior mean, rounded | non-local means |", "|---|---|---|---|---|"]
    for name in a.datasets.split(","):
        run = HERE / ".cache" / "likelihood" / name / "ours"
        _, model = load_run(run, "cpu")
        _, test_spec, split, _ = datasets(MNIST)[name]
        x = load_dataset(test_spec, split, model.levels).x
        for s in SIGMAS[name]:
            y = add_noise(x, s, torch.Generator().manual_seed(int(s * 10)))
            with torch.no_grad():
                _, ours = posterior_mean(model, y.float(), s)
            base = nlm(y.numpy(), s, model.levels)
            noisy = y.clamp(0, model.levels - 1).round()
            row = (f"| {name} | {s:g} | {psnr(noisy, x, model.levels):.2f} | {psnr(ours, x, model.levels):.2f} "
                   f"| {psnr(torch.from_numpy(base), x, model.levels):.2f} |")
            rows.append(row)
            print(row, flush=True)
    text = "\n".join(rows) + ("\n\n- PSNR in dB over each whole test set, noisy input clipped and rounded to "
                              "levels; models: benchmarks/.cache/likelihood/<data>/ours (the likelihood "
                              "benchmark's runs)")
    print(text)
    if not a.no_append:
        append_results("Denoising: PSNR against the noise level (benchmarks/denoising.py)", header(), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
