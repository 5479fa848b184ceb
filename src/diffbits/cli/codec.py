"""``diffbits compress`` and ``diffbits decompress``: lossless files by bits-back coding."""
from __future__ import annotations

from pathlib import Path

from .common import command, print_json


def add_parsers(sub) -> None:
    p = command(sub, "compress", run_compress, "lossless compression with a trained model (bits-back coding)",
                "Code every input with the model's T-step chain into one .dbits file; decompress restores\n"
                "each file bit-exact under its own name. Nothing is written unless every item verified.")
    p.add_argument("run", type=Path, help="the run whose model codes the files")
    p.add_argument("inputs", type=Path, nargs="+", help="image files, .wav files, .npy or .npz arrays of the model's shape")
    p.add_argument("-o", "--out", type=Path, required=True, help="the .dbits file to write")
    p.add_argument("--T", type=int, default=100, help="steps of the discrete-time chain")
    p.add_argument("--resolution", type=float, default=4.0, help="latent lattice: standard deviations per lattice step")
    p.add_argument("--batch", type=int, default=64, help="examples coded side by side")
    p.add_argument("--draws", type=int, default=4,
                   help="time strata per example for the bound reported beside the rate (T: every step once)")
    p.add_argument("--grid", choices=("auto", "rate-optimal", "uniform-t"), default="auto",
                   help="where the chain's T steps go: rate-optimal (chosen from the model's error on these inputs, "
                        "kept in the file), uniform in t, or auto: rate-optimal when it pays for its header bytes")
    p.add_argument("--json", action="store_true", help="print one JSON object (strict: no NaN)")
    p = command(sub, "decompress", run_decompress, "restore every item of a .dbits file, bit-exact")
    p.add_argument("file", type=Path, help="a .dbits file")
    p.add_argument("--model", type=Path, required=True, help="the run that compressed it")
    p.add_argument("-o", "--out", type=Path, required=True, help="folder for the restored files")


def run_compress(a) -> int:
    from ..codec import compress

    rep = compress(a.run, a.inputs, a.out, T=a.T, resolution=a.resolution, batch=a.batch, draws=a.draws,
                   progress=not a.json, grid=a.grid)
    if a.json:
        print_json(rep)
        return 0
    for r in rep["items"]:
        flag = "  (fallback: deflate)" if r["fallback"] else ""
        print(f"{r['name']}: {r['examples']} examples, {r['bpd']:.4f} bits/dim (net {r['net_bpd']:.4f}, "
              f"bound {r['bound_bpd']:.4f}){flag}")
    t = rep["total"]
    print(f"total: {t['bytes']} bytes, {t['bpd']:.4f} bits/dim (net of {t['initial_bits']} initial bits: "
          f"{t['net_bpd']:.4f}; bound at T={t['T']}, {t['grid']} steps: {t['bound_bpd']:.4f}) in {t['encode_s']:.1f} s "
          f"-> {a.out}")
    return 0


def run_decompress(a) -> int:
    from ..codec import decompress

    for p in decompress(a.file, a.model, a.out, progress=True):
        print(p)
    return 0
