"""Compression benchmark: our bits-back codec against PNG, WebP and JPEG-XL lossless.

On the digits test split and on the last 1,000 images of ``mnist10k`` (models trained on the
rest: the runs of ``benchmarks/likelihood.py``, reused), ``diffbits compress`` at ``--T``: actual
bits/dim (every byte of the file), net of the one-time initial bits, the bound at the same T on
the same images, encode (with its verifying decode) and decode throughput; beside the image
codecs per image and as one mosaic. Appends the table to ``benchmarks/RESULTS.md``.

    python benchmarks/compression.py [--datasets digits,mnist] [--T 100] [--n 0]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from likelihood import codec_rows, datasets  # noqa: E402
from report import append_results, header  # noqa: E402

from diffbits.codec import compress, decompress  # noqa: E402
from diffbits.data import load_dataset  # noqa: E402

RUNS = HERE / ".cache" / "likelihood"


def one(name: str, run: Path, T: int, n: int, mnist: str, draws: int, single: int,
        grid: str = "auto") -> tuple[str, str]:
    _, test_spec, split, desc = datasets(mnist)[name]
    test = load_dataset(test_spec, split)
    if n:
        test = dataclasses.replace(test, x=test.x[:n])
    images = test.x[:, 0].numpy().astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / f"{name}.npy", Path(tmp) / f"{name}.dbits"
        np.save(src, images)
        rep = compress(run, [src], out, T=T, draws=draws, progress=True, grid=grid)
        tic = time.perf_counter()
        back = decompress(out, run, Path(tmp) / "back", progress=True)
        t_dec = time.perf_counter() - tic
        assert np.array_equal(np.load(back[0]), images), "round trip failed"
        singles = []  # one image per file: every file pays its own initial bits and container
        for i in range(min(single, len(images))):
            np.save(Path(tmp) / f"one{i}.npy", images[i:i + 1])
            singles.append(compress(run, [Path(tmp) / f"one{i}.npy"], Path(tmp) / f"one{i}.dbits", T=T, draws=1,
                                    grid=grid)["total"])
    t = rep["total"]
    rows = [f"**{name}** ({desc}; {len(images)} test images, T = {T}, {t['grid']} steps (--grid {grid}), run `{run}`)", "",
            "| method | bits/dim | ours ÷ this |", "|---|---|---|",
            f"| diffbits bits-back, actual (all {t['bytes']} bytes) | {t['bpd']:.4f} | 1.000 |",
            f"| diffbits, net (without {t['initial_bits']} initial bits and the {t['container_bytes']}-byte container) | {t['net_bpd']:.4f} | {t['bpd'] / t['net_bpd']:.3f} |",
            f"| the model's bound at T = {T} ({draws} time strata per image{' (every step)' if draws == T else ''}) | {t['bound_bpd']:.4f} | {t['bpd'] / t['bound_bpd']:.3f} |"]
    if singles:
        one_bpd = sum(r["bpd"] for r in singles) / len(singles)
        rows.append(f"| diffbits, one image per file (mean of {len(singles)} files; each is deflated whole, the warm start) "
                    f"| {one_bpd:.4f} | {t['bpd'] / one_bpd:.3f} |")
    for r in codec_rows(test):
        rows.append(f"| {r['method']} | {r['bpd']:.4f} | {t['bpd'] / r['bpd']:.3f} |")
    rows += ["", f"- actual ÷ bound: {t['bpd'] / t['bound_bpd']:.4f}; net ÷ bound: {t['net_bpd'] / t['bound_bpd']:.4f}; "
                 f"initial bits per file: {t['initial_bits']} ({t['initial_bits'] / t['dims']:.4f} bits/dim here); "
                 f"warm start: {t['warm_examples']} images deflated into {t['warm_bits']} bits; "
                 f"fallback items: {t['fallback_items']}",
             f"- encode (with its verifying decode): {t['encode_s'] + t['verify_s']:.1f} s "
             f"({len(images) / (t['encode_s'] + t['verify_s']):.2f} images/s); decode: {t_dec:.1f} s "
             f"({len(images) / t_dec:.2f} images/s)"]
    return "\n".join(rows), f"{name}: actual {t['bpd']:.4f}, bound {t['bound_bpd']:.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,mnist")
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--n", type=int, default=0, help="only the first n test images (0: all)")
    ap.add_argument("--draws", type=int, default=0, help="time strata per image for the bound (0: T, every step)")
    ap.add_argument("--single", type=int, default=8, help="also compress this many images one per file")
    ap.add_argument("--mnist", default="/work/shared/data/mnist10k.npz")
    ap.add_argument("--grid", default="auto", help="where the chain's steps go: auto | rate-optimal | uniform-t")
    a = ap.parse_args(argv)
    tables = []
    for name in a.datasets.split(","):
        run = RUNS / name / "ours"
        if not (run / "checkpoint.pt").exists():
            print(f"compression.py: no trained run at {run}; run benchmarks/likelihood.py --datasets {name} first",
                  file=sys.stderr)
            return 2
        text, line = one(name, run, a.T, a.n, a.mnist, a.draws or a.T, a.single, a.grid)
        print(text, flush=True)
        tables.append(text)
    append_results("Compression: bits-back codec vs image codecs (benchmarks/compression.py)", header(),
                   "\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
