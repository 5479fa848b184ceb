"""The bits-back chain's rate against its bound, with and without mixing the stack before each pop.

ANS is last in, first out: without mixing, each pop of ``q(z_i | z_i-1)`` reads the bits the last
push of ``p`` left, which are not uniform, so the popped latents are not draws of ``q`` and the
chain spends more than its bound (docs/codec.md sec. 2.1). Two panels:

- an exact denoiser on 32 independent 16-level coordinates of known entropy (400 items; the bound
  is computed exactly in t: every step, 8 noises each), T = 20 and 100, lattice resolution 1, 4, 16;
- a trained model (default: the shipped ``digits``) on its held-out images at T = 100: the chain's
  bits/dim against the bound on the same images (every step), and per image, spent minus bound
  (mean ± standard error; each image's cost is one sampled path).

Rate only: encode, no decode (the round trip is the tests' job). Appends to ``benchmarks/RESULTS.md``.

    python benchmarks/chain_mixing.py [--model digits] [--n 0] [--resolutions 1,4,16]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # tests.helpers: the exact denoiser

from report import append_results, header  # noqa: E402

from diffbits.codec.bitsback import BitsBackCoder  # noqa: E402
from diffbits.codec.files import bound_bpd, paired_excess  # noqa: E402
from diffbits.data import load_dataset  # noqa: E402
from diffbits.runs import resolve_model  # noqa: E402
from diffbits.schedules import FixedLinear  # noqa: E402
from diffbits.vdm import VDM  # noqa: E402
from tests.helpers import ExactCategoricalDenoiser, entropy_bits, sample_categorical  # noqa: E402


def chain(model, x: np.ndarray, T: int, resolution: float, mix: bool) -> tuple[float, np.ndarray, int]:
    """(the chain's bits/dim on its examples, each example's share of them, the warm examples)."""
    words, rep = BitsBackCoder(model, T=T, resolution=resolution, mix=mix).encode(x)
    warm, dims = rep["layout"]["warm"], model.dims
    bits = 32.0 * (len(words) - rep["initial_words"] - rep["warm_words"])
    info = rep["info_bits"]
    return bits / ((len(x) - warm) * dims), info * bits / info.sum() / dims, warm


def exact_panel(resolutions: list[float]) -> str:
    weights = torch.linspace(1.0, 3.0, 16)
    probs = (weights / weights.sum()).repeat(32, 1)
    model = VDM(ExactCategoricalDenoiser(probs), FixedLinear(-9.0, 5.0), levels=16, data_shape=(32,))
    x = sample_categorical(probs, 400, seed=0)
    rows = [f"Exact denoiser, 400 items of 32 independent 16-level coordinates (entropy {entropy_bits(probs):.4f} "
            "bits/dim); chain bits/dim ÷ the T-step bound on the chain's items", "",
            "| T | bound (bits/dim) | resolution | without mixing | with mixing |", "|---:|---:|---:|---:|---:|"]
    for T in (20, 100):
        bound = bound_bpd(model, x.numpy(), T, draws=8 * T)  # every step 8 times
        for r in resolutions:
            ratios = []
            for mix in (False, True):
                bpd, _, warm = chain(model, x.numpy(), T, r, mix)
                ratios.append(bpd / bound[warm:].mean())
            rows.append(f"| {T} | {bound.mean():.4f} | {r:g} | {ratios[0]:.4f} | **{ratios[1]:.4f}** |")
            print(rows[-1], flush=True)
    return "\n".join(rows)


def model_panel(name: str, n: int, resolutions: list[float]) -> str:
    cfg, model = resolve_model(name)
    x = load_dataset(cfg.data, "test").x.numpy()
    x = x[:n] if n else x
    T = 100
    bound = bound_bpd(model, x, T, draws=T)
    rows = [f"Model `{name}` on {len(x)} held-out examples ({cfg.data}), T = {T}; bound on all of them, every step: "
            f"{bound.mean():.4f} bits/dim", "",
            "| resolution | mixing | chain bits/dim | bound on its examples | chain ÷ bound | spent − bound per example (± s.e.) |",
            "|---:|---|---:|---:|---:|---:|"]
    for r in resolutions:
        for mix in (False, True):
            with torch.no_grad():
                bpd, per_example, warm = chain(model, x, T, r, mix)
            excess, se = paired_excess(per_example, bound[warm:])
            rows.append(f"| {r:g} | {'yes' if mix else 'no'} | {bpd:.4f} | {bound[warm:].mean():.4f} | "
                        f"{bpd / bound[warm:].mean():.4f} | {excess:+.4f} ± {se:.4f} |")
            print(rows[-1], flush=True)
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="digits", help="a shipped model or a run directory ('' skips the panel)")
    ap.add_argument("--n", type=int, default=0, help="only the first n held-out examples (0: all)")
    ap.add_argument("--resolutions", default="1,4,16")
    ap.add_argument("--no-append", action="store_true", help="print the tables only (a check, not a record)")
    a = ap.parse_args(argv)
    resolutions = [float(r) for r in a.resolutions.split(",")]
    tables = [exact_panel(resolutions)]
    if a.model:
        tables.append(model_panel(a.model, a.n, [r for r in resolutions if r <= 4]))
    table = "\n\n".join(tables)
    print(table)
    if not a.no_append:
        append_results("Codec: the chain's rate with and without mixing the stack before each pop "
                       "(benchmarks/chain_mixing.py)", header(), table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
