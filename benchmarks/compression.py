"""Compression benchmark: our bits-back codec against PNG, WebP and JPEG-XL lossless.

On the digits test split, the last 1,000 images of ``mnist10k`` (with the shipped model of that
name, else the run of ``benchmarks/likelihood.py``) and the recipe panel's 256 held-out RGB photo
patches (with ``--model RUN``, e.g. an 8-minute no-flag run on the panel's training patches),
``diffbits compress`` at ``--T``, the test images in one ``.npy``: the file's bits/dim (every byte), the chain's own rate beside the
bound at the same T on the same images, per-term actual against ideal bits, encode (with its
verifying decode) and decode time; ``--single`` images one per PNG file against JPEG-XL's file
for the same image; beside the image codecs per image and as one mosaic. Appends the tables to
``benchmarks/RESULTS.md``.

    python benchmarks/compression.py [--datasets digits,mnist] [--model NAME|RUN] [--T 100] [--n 0]
    python benchmarks/compression.py --datasets photos --model RUN
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

from likelihood import datasets  # noqa: E402
from recipe import DATA, build_photos, image_codecs  # noqa: E402
from report import append_results, header  # noqa: E402

from PIL import Image  # noqa: E402

from diffbits import shipped  # noqa: E402
from diffbits.codec import classical, compress, decompress  # noqa: E402
from diffbits.data import load_dataset  # noqa: E402

RUNS = HERE / ".cache" / "likelihood"


def dataset(name: str, mnist: str) -> tuple[str, str, str, str]:
    """(train spec, test spec, test split, description): likelihood.py's, or the photo patches
    (built on first use only)."""
    if name != "photos":
        return datasets(mnist)[name]
    train, test, split = build_photos(DATA / "photos")
    return train, test, split, "16x16 RGB patches of scikit-image's photos, 256 levels; the recipe panel's 256 held-out patches"


def one(name: str, run: Path, T: int, n: int, mnist: str, draws: int, single: int,
        grid: str = "auto") -> tuple[str, str]:
    _, test_spec, split, desc = dataset(name, mnist)
    test = load_dataset(test_spec, split)
    if n:
        test = dataclasses.replace(test, x=test.x[:n])
    images = test.x.numpy().astype(np.uint8)  # (N, H, W) gray or (N, 3, H, W) RGB, the integers the model sees
    images = images[:, 0] if images.shape[1] == 1 else images
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / f"{name}.npy", Path(tmp) / f"{name}.dbits"
        np.save(src, images)
        rep = compress(run, [src], out, T=T, draws=draws, progress=True, grid=grid)
        tic = time.perf_counter()
        back = decompress(out, run, Path(tmp) / "back", progress=True)
        t_dec = time.perf_counter() - tic
        assert np.array_equal(np.load(back[0]), images), "round trip failed"
        singles = []  # one image per file, each a PNG: the file against JPEG-XL's for the same image
        for i in range(min(single, len(images))):
            pixels = images[i] if images.ndim == 3 else np.ascontiguousarray(images[i].transpose(1, 2, 0))
            Image.fromarray(pixels).save(Path(tmp) / f"one{i}.png")
            r = compress(run, [Path(tmp) / f"one{i}.png"], Path(tmp) / f"one{i}.dbits", T=T, draws=1, grid=grid)
            jxl = len(classical.encode_image(pixels).get("jpegxl", b"")) or None
            singles.append((r["total"]["bytes"], jxl, r["items"][0]["stored"]))
    t = rep["total"]
    rows = [f"**{name}** ({desc}; {len(images)} test images in one .npy, T = {T}, {t['grid']} steps (--grid {grid}), "
            f"model `{run}`)", "",
            "| method | bits/dim | file ÷ this |", "|---|---|---|",
            f"| diffbits, the whole file ({t['bytes']:,} bytes) | {t['bpd']:.4f} | 1.000 |"]
    if t["model_items"]:
        rows += [
            f"| diffbits, the chain alone (its {t['model_examples'] - t['warm_examples']} images) | {t['chain_bpd']:.4f} "
            f"| {t['bpd'] / t['chain_bpd']:.3f} |",
            f"| the model's bound at T = {T} on the chain's images ({draws} time strata each"
            f"{', every step' if draws == T else ''}) | {t['chain_bound_bpd']:.4f} | {t['bpd'] / t['chain_bound_bpd']:.3f} |",
            f"| the model's bound at T = {T} on all {len(images)} images | {t['bound_bpd']:.4f} "
            f"| {t['bpd'] / t['bound_bpd']:.3f} |"]
    for r in image_codecs(test, DATA):
        rows.append(f"| {r['method']} | {r['bpd']:.4f} | {t['bpd'] / r['bpd']:.3f} |")
    notes = [f"- file ÷ bound (all images): {t['bpd'] / t['bound_bpd']:.4f}" if t["model_items"] else
             "- every image was stored classically"]
    if t["model_items"]:
        excess = ("; per image, spent − bound {:+.4f} ± {:.4f} bits/dim (mean ± standard error: each image's cost is "
                  "one sampled trajectory)".format(*t["chain_excess_bpd"]) if t["chain_excess_bpd"] else "")
        notes += [f"- chain ÷ bound (the chain's images): {t['chain_bpd'] / t['chain_bound_bpd']:.4f}{excess}; container "
                  f"{t['container_bytes']} bytes; warm start {t['warm_examples']} images by {t['warm_codec']} in "
                  f"{t['warm_bits']:.0f} bits; initial bits {t['initial_bits']}",
                  "- per term, actual ÷ ideal bits: " + ", ".join(
                      f"{k} {v['actual_bpd']:.4f}/{v['ideal_bpd']:.4f}" for k, v in t["terms"].items()),
                  f"- encode {t['encode_s']:.1f} s, its verifying decode {t['verify_s']:.1f} s, decompress "
                  f"{t_dec:.1f} s ({len(images) / t_dec:.2f} images/s)"]
    if singles:
        over = [b - j for b, j, _ in singles if j]
        notes.append(f"- one image per file ({len(singles)} PNGs): mean {np.mean([b for b, _, _ in singles]):.1f} "
                     f"bytes, {8 * np.mean([b for b, _, _ in singles]) / images[0].size:.4f} bits/dim; largest excess "
                     f"over JPEG-XL's file for the same image {max(over, default=0):+d} bytes; stored by the model in "
                     f"{sum(s == 'model' for _, _, s in singles)} of them")
    return "\n".join(rows + [""] + notes), f"{name}: file {t['bpd']:.4f}, bound {t.get('bound_bpd', float('nan')):.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits,mnist")
    ap.add_argument("--model", help="a shipped model or a run directory for every dataset (default: the shipped "
                                    "model named like the dataset, else benchmarks/likelihood.py's run)")
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--n", type=int, default=0, help="only the first n test images (0: all)")
    ap.add_argument("--draws", type=int, default=0, help="time strata per image for the bound (0: T, every step)")
    ap.add_argument("--single", type=int, default=8, help="also compress this many images one per file")
    ap.add_argument("--mnist", default="/work/shared/data/mnist10k.npz")
    ap.add_argument("--grid", default="auto", help="where the chain's steps go: auto | rate-optimal | uniform-t")
    ap.add_argument("--no-append", action="store_true", help="print the tables only (a check, not a record)")
    a = ap.parse_args(argv)
    tables = []
    for name in a.datasets.split(","):
        run = a.model or (name if name in shipped.shipped() else RUNS / name / "ours")
        if not isinstance(run, str) and not (run / "checkpoint.pt").exists():
            print(f"compression.py: no shipped model {name!r} and no trained run at {run}; "
                  f"run benchmarks/likelihood.py --datasets {name} first, or pass --model", file=sys.stderr)
            return 2
        if name == "photos" and isinstance(run, Path) and not a.model:
            print("compression.py: the photo patches need --model RUN (e.g. diffbits train --data "
                  f"{DATA / 'photos' / 'train.npz'} --minutes 8)", file=sys.stderr)
            return 2
        text, line = one(name, run, a.T, a.n, a.mnist, a.draws or a.T, a.single, a.grid)
        print(text, flush=True)
        tables.append(text)
    if not a.no_append:
        append_results("Compression: bits-back codec vs image codecs (benchmarks/compression.py)", header(),
                       "\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
