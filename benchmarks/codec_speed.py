"""Rate against speed: the codec at T in {10, 20, 50, 100, 200, 1000} with rate-optimal steps.

For a model (a shipped model's name or a run directory) and its held-out examples in one
``.npy``: per T, the file's bits/dim (every byte), the model's bound at that T on the same
examples (every step: exact in t), encode, verifying-decode and decompress throughput in
examples/s, and beside them the network-evaluation limit: the examples/s one forward pass per
step allows at the best batch size (``T`` passes per example, nothing else). Appends the table
to ``benchmarks/RESULTS.md``.

    python benchmarks/codec_speed.py --model mnist --n 100
    python benchmarks/codec_speed.py --model digits --T 10,20,50,100 --n 200
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import append_results, header  # noqa: E402

from diffbits import shipped  # noqa: E402
from diffbits.codec import compress, decompress  # noqa: E402
from diffbits.runs import resolve_model  # noqa: E402


@torch.no_grad()
def forward_rate(model, batches=(16, 64, 256), repeats: int = 3) -> tuple[float, int]:
    """The most examples/s of one network call, over ``batches``, and the batch that gave it."""
    best = (0.0, 0)
    for b in batches:
        z, g = torch.randn(b, *model.data_shape), torch.full((b,), -3.0)
        model.eps_hat(z, g)  # warm
        tic = time.perf_counter()
        for _ in range(repeats):
            model.eps_hat(z, g)
        best = max(best, (b * repeats / (time.perf_counter() - tic), b))
    return best


def held_out(model_name: str, n: int, data: str | None) -> np.ndarray:
    if data:
        return np.load(data)[:n]
    card = shipped.card(model_name)
    if "test" in card:
        try:
            from diffbits.data import load_dataset

            x = load_dataset(card["test"], "test").x[:n].numpy()
            return (x[:, 0] if x.shape[1] == 1 else x).astype(np.uint8 if card["levels"] <= 256 else np.uint16)
        except Exception:  # the full held-out set is not on this machine: the examples that ship
            pass
    return np.load(shipped.find(model_name) / card["examples"])[:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist", help="a shipped model's name or a run directory")
    ap.add_argument("--data", help="a .npy of held-out examples (default: the model card's test data)")
    ap.add_argument("--n", type=int, default=100, help="examples coded at each T")
    ap.add_argument("--T", default="10,20,50,100,200,1000")
    ap.add_argument("--cap", type=int, default=0, help="at most this many example-steps per T (n*T): a large T codes "
                                                       "fewer examples (0: no cap)")
    ap.add_argument("--no-append", action="store_true", help="print the table only (a check, not a record)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    cfg, model = resolve_model(a.model)
    x = held_out(a.model, a.n, a.data)
    rate, best_batch = forward_rate(model)
    rows = ["| T | examples | steps | bits/dim (file) | bound at T | file ÷ bound | encode ex/s | verify ex/s | decompress ex/s "
            "| network limit ex/s | encode ÷ limit |", "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for T in map(int, a.T.split(",")):
            n = min(len(x), max(1, a.cap // T)) if a.cap else len(x)
            src = Path(tmp) / f"held_out{n}.npy"
            np.save(src, x[:n])
            out = Path(tmp) / f"T{T}.dbits"
            rep = compress((cfg, model), [src], out, T=T, draws=min(T, 100), progress=True)
            t = rep["total"]
            tic = time.perf_counter()
            back = decompress(out, (cfg, model), Path(tmp) / f"back{T}")
            t_dec = time.perf_counter() - tic
            assert np.array_equal(np.load(back[0]), x[:n]), "round trip failed"
            if not t["model_items"]:
                rows.append(f"| {T} | {n} | - | {t['bpd']:.4f} | - | - | - | - | - | {rate / T:.1f} | - |  (stored classically)")
                continue
            enc, ver = t["encode_examples_per_s"], t["decode_examples_per_s"]
            limit = rate / T
            line = (f"| {T} | {n} | {t['grid']} | {t['bpd']:.4f} | {t['bound_bpd']:.4f} | {t['bpd'] / t['bound_bpd']:.3f} "
                    f"| {enc:.2f} | {ver:.2f} | {n / t_dec:.2f} | {limit:.1f} | {enc / limit:.2f} |")
            print(line, flush=True)
            rows.append(line)
    notes = (f"\n- model `{a.model}` ({sum(p.numel() for p in model.parameters()):,} parameters, examples "
             f"{tuple(model.data_shape)}, {model.levels} levels); the first n of {len(x)} held-out examples in one .npy"
             f"{f' (n*T at most {a.cap:,})' if a.cap else ''}\n"
             f"- network limit: one forward pass per example and step at the best batch ({best_batch}): "
             f"{rate:.0f} examples/s / T; the codec's encode also pops and pushes every latent with constriction, "
             f"and the verify decodes it all again (its cost is the verify column)\n"
             f"- bound at T: every step of the chain once per example (exact in t), on the chain's own steps")
    table = "\n".join(rows) + notes
    print(table)
    if not a.no_append:
        append_results("Codec rate against speed (benchmarks/codec_speed.py)", header(), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
